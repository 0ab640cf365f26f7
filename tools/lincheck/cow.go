// cow.go holds the two small value types the model's states are built
// from: a bitset of spots and a copy-on-write array of int32 with a hash
// kept up to date on every write.
//
// States are shared by porcupine's search and cache, so neither type may
// ever be changed in place once a state holding it has been returned.
package main

import "math/bits"

// bitset is a set of spot indexes. Treat a bitset reachable from a state
// as frozen: derive a new one with clone before changing it.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int)      { b[i/64] |= 1 << uint(i%64) }
func (b bitset) clear(i int)    { b[i/64] &^= 1 << uint(i%64) }
func (b bitset) has(i int) bool { return i >= 0 && i/64 < len(b) && b[i/64]&(1<<uint(i%64)) != 0 }
func (b bitset) clone() bitset  { return append(bitset(nil), b...) }
func (b bitset) count() (n int) {
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

func (b bitset) equal(c bitset) bool {
	if len(b) != len(c) {
		return false
	}
	for i := range b {
		if b[i] != c[i] {
			return false
		}
	}
	return true
}

// each calls f for every member, in increasing order, until f returns false.
func (b bitset) each(f func(i int) bool) {
	for wi, w := range b {
		for w != 0 {
			t := bits.TrailingZeros64(w)
			if !f(wi*64 + t) {
				return
			}
			w &^= 1 << uint(t)
		}
	}
}

func (b bitset) hash() uint64 {
	h := uint64(1469598103934665603)
	for _, w := range b {
		h = (h ^ w) * 1099511628211
	}
	return h
}

const chunkLen = 64

// cow is an int32 array whose writes copy only the chunk they touch.
// The zero value of every element is 0.
type cow struct {
	chunks []*[chunkLen]int32
	hash   uint64 // XOR of mix(i, v) over every element v != 0
}

func newCow(n int) cow {
	zero := new([chunkLen]int32)
	c := cow{chunks: make([]*[chunkLen]int32, (n+chunkLen-1)/chunkLen)}
	for i := range c.chunks {
		c.chunks[i] = zero // shared until written
	}
	return c
}

func mix(i int, v int32) uint64 {
	if v == 0 {
		return 0
	}
	x := uint64(i)<<32 ^ uint64(uint32(v))
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (c cow) get(i int) int32 { return c.chunks[i/chunkLen][i%chunkLen] }

func (c cow) equal(d cow) bool {
	if c.hash != d.hash || len(c.chunks) != len(d.chunks) {
		return false
	}
	for i := range c.chunks {
		if c.chunks[i] != d.chunks[i] && *c.chunks[i] != *d.chunks[i] {
			return false
		}
	}
	return true
}

// cowEdit batches writes to a cow: the chunk table is copied once, and each
// chunk at most once.
type cowEdit struct {
	c     cow
	owned map[int]bool
}

func (c cow) edit() *cowEdit {
	chunks := make([]*[chunkLen]int32, len(c.chunks))
	copy(chunks, c.chunks)
	return &cowEdit{c: cow{chunks: chunks, hash: c.hash}, owned: make(map[int]bool)}
}

func (e *cowEdit) set(i int, v int32) {
	ci := i / chunkLen
	old := e.c.chunks[ci][i%chunkLen]
	if old == v {
		return
	}
	if !e.owned[ci] {
		fresh := *e.c.chunks[ci]
		e.c.chunks[ci] = &fresh
		e.owned[ci] = true
	}
	e.c.chunks[ci][i%chunkLen] = v
	e.c.hash ^= mix(i, old) ^ mix(i, v)
}

func (e *cowEdit) get(i int) int32 { return e.c.get(i) }

func (e *cowEdit) done() cow { return e.c }
