// certain.go finds violations that no order of the operations can explain,
// without a search: the same spot acknowledged to two bookings where the
// second was asked for after the first was answered, and nothing that could
// free the spot (a cancel of the first, whatever its answer) was asked for
// before the second was answered. Porcupine proves such a history illegal
// only by trying every order, which can take long in a big, busy history.
//
// It must never report what some order could explain: every rule here
// holds in every linearization.
package main

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// certainViolations lists double bookings that hold in every order.
func certainViolations(ops []porcupine.Operation) []string {
	type ack struct {
		booking   int32
		call, ret int64
		line      int
	}
	acks := make(map[int][]ack)        // spot -> acknowledged bookings of it
	cancels := make(map[int32][]int64) // booking -> calls of cancels of it
	var u *universe
	for _, op := range ops {
		in, out := op.Input.(*input), op.Output.(*output)
		u = in.u
		switch {
		case in.op == opBook && out.outcome == answered && out.gotSpot >= 0:
			acks[out.gotSpot] = append(acks[out.gotSpot], ack{out.booking, op.Call, op.Return, in.line})
		case in.op == opCancel:
			cancels[in.booking] = append(cancels[in.booking], op.Call)
		}
	}
	var found []string
	spots := make([]int, 0, len(acks))
	for spot := range acks {
		spots = append(spots, spot)
	}
	sort.Ints(spots)
	for _, spot := range spots {
		list := acks[spot]
		sort.Slice(list, func(i, j int) bool { return list[i].ret < list[j].ret })
		for i, a := range list {
			for _, b := range list[i+1:] {
				if b.booking == a.booking || b.call <= a.ret {
					continue
				}
				freed := false
				for _, c := range cancels[a.booking] {
					if c < b.ret {
						freed = true
						break
					}
				}
				if !freed {
					found = append(found, fmt.Sprintf(
						"spot %s: %s (line %d, answered at %d) and %s (line %d, asked at %d) both hold it, and no cancel of %s was asked for before %d",
						u.spots[spot].id, u.bookingID[a.booking], a.line, a.ret, u.bookingID[b.booking], b.line, b.call, u.bookingID[a.booking], b.ret))
					break
				}
			}
		}
	}
	return found
}
