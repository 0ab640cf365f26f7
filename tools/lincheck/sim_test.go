// A simulated correct server: clients issue concurrent operations, each
// takes effect at one instant inside its interval on a serial facility,
// and some answers are lost (some after the operation applied, some
// before), with "crashes" that lose every operation in flight. Such
// histories are linearizable by construction, so the checker must pass
// every one; the same histories with one acknowledged answer made to
// double-book must fail.
package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

const simLayout = `{"facility":"f1","zones":[
 {"id":"z1","spots":[{"id":"P-1"},{"id":"P-2"},{"id":"P-3"},{"id":"P-4"},{"id":"P-5"},{"id":"P-6"},{"id":"P-7","kind":"ev"},{"id":"P-8","kind":"ev"}]},
 {"id":"z2","spots":[{"id":"P-9"},{"id":"P-10"},{"id":"P-11","kind":"compact"},{"id":"P-12"}]}]}`

type simSpot struct{ id, zone, kind string }

var simSpots = func() []simSpot {
	var out []simSpot
	for i := 1; i <= 12; i++ {
		zone, kind := "z1", "standard"
		if i > 8 {
			zone = "z2"
		}
		if i == 7 || i == 8 {
			kind = "ev"
		}
		if i == 11 {
			kind = "compact"
		}
		out = append(out, simSpot{fmt.Sprintf("P-%d", i), zone, kind})
	}
	return out
}()

type simBooking struct {
	spot   int
	status string
}

// simServer is the serial facility the simulated operations apply to.
type simServer struct {
	holder   []string // spot -> live booking id
	bookings map[string]*simBooking
	keys     map[string]string
	next     int
}

type simOp struct {
	rec            map[string]interface{}
	effect, ret    int
	lost, applies  bool
	client         int
	key, bookingID string
}

func (s *simServer) apply(op *simOp) {
	r := op.rec
	switch r["op"] {
	case "book":
		if op.key != "" {
			if id, ok := s.keys[op.key]; ok {
				b := s.bookings[id]
				r["ok"], r["http"], r["booking"], r["got_spot"], r["status"] = true, 200, id, simSpots[b.spot].id, b.status
				return
			}
		}
		zone, _ := r["zone"].(string)
		kind, _ := r["kind"].(string)
		spot, _ := r["spot"].(string)
		chosen := -1
		for i, sp := range simSpots {
			if (zone == "" || sp.zone == zone) && (kind == "" || sp.kind == kind) && (spot == "" || sp.id == spot) && s.holder[i] == "" {
				chosen = i
				break
			}
		}
		if chosen < 0 {
			r["ok"], r["http"] = false, 409
			r["error"] = "no_spot_available"
			if spot != "" {
				r["error"] = "spot_not_available"
			}
			return
		}
		s.next++
		id := fmt.Sprintf("bk_%d", s.next)
		s.holder[chosen] = id
		s.bookings[id] = &simBooking{spot: chosen, status: "CONFIRMED"}
		if op.key != "" {
			s.keys[op.key] = id
		}
		r["ok"], r["http"], r["booking"], r["got_spot"], r["status"] = true, 201, id, simSpots[chosen].id, "CONFIRMED"
	case "cancel", "get":
		id := r["booking"].(string)
		b, ok := s.bookings[id]
		switch {
		case !ok:
			r["ok"], r["http"], r["error"] = false, 404, "unknown_booking"
		case r["op"] == "get":
			r["ok"], r["http"], r["status"], r["got_spot"] = true, 200, b.status, simSpots[b.spot].id
		case b.status != "CONFIRMED":
			r["ok"], r["http"], r["error"] = false, 409, "invalid_booking_state"
		default:
			b.status = "CANCELLED"
			s.holder[b.spot] = ""
			r["ok"], r["http"], r["status"] = true, 200, "CANCELLED"
		}
	}
}

// simulate returns a JSON Lines history of a correct server.
func simulate(seed int64, clients, ticks int) string {
	return simulateWith(seed, clients, ticks, 25, 400)
}

// simulateWith loses one answer in lossOneIn and crashes every crashEvery ticks.
func simulateWith(seed int64, clients, ticks, lossOneIn, crashEvery int) string {
	return simulateKeys(seed, clients, ticks, lossOneIn, crashEvery, 2)
}

// simulateKeys gives one booking request in keyOneIn an idempotency key.
func simulateKeys(seed int64, clients, ticks, lossOneIn, crashEvery, keyOneIn int) string {
	rng := rand.New(rand.NewSource(seed))
	srv := &simServer{holder: make([]string, len(simSpots)), bookings: map[string]*simBooking{}, keys: map[string]string{}}
	pending := make([]*simOp, clients)
	known := make([][]string, clients)
	retryKey := make([]string, clients)
	keySeq := 0
	var out []string
	emit := func(op *simOp) {
		data, _ := json.Marshal(op.rec)
		out = append(out, string(data))
	}
	for t := 0; t < ticks; t++ {
		crash := t > 0 && t%crashEvery == 0
		for c := 0; c < clients; c++ {
			op := pending[c]
			if op == nil {
				continue
			}
			if op.effect == t && op.applies {
				srv.apply(op)
			}
			if crash && !op.lost {
				op.lost, op.applies = true, op.effect <= t
			}
			if op.ret == t || (op.lost && (crash || op.ret <= t)) {
				if op.lost {
					for _, f := range []string{"ok", "http", "booking", "got_spot", "status", "error"} {
						if f == "booking" && op.rec["op"] != "book" {
							continue
						}
						delete(op.rec, f)
					}
					if rng.Intn(2) == 0 {
						op.rec["return_ns"] = nil
					} else {
						op.rec["return_ns"] = int64(t) * 1000
						op.rec["ok"], op.rec["http"], op.rec["error"] = false, 503, "storage_unavailable"
					}
					if op.key != "" {
						retryKey[c] = op.key
					}
				} else {
					op.rec["return_ns"] = int64(op.ret) * 1000
					if op.rec["op"] == "book" && op.rec["ok"] == true {
						known[c] = append(known[c], op.rec["booking"].(string))
					}
					if op.key != "" && op.key == retryKey[c] {
						retryKey[c] = ""
					}
				}
				emit(op)
				pending[c] = nil
			}
		}
		for c := 0; c < clients; c++ {
			if pending[c] != nil || rng.Intn(3) != 0 {
				continue
			}
			rec := map[string]interface{}{"client": c, "call_ns": int64(t) * 1000, "facility": "f1"}
			op := &simOp{rec: rec, client: c, effect: t + 1 + rng.Intn(6)}
			op.ret = op.effect + rng.Intn(6)
			switch r := rng.Intn(10); {
			case retryKey[c] != "" || r < 5 || len(known[c]) == 0:
				rec["op"] = "book"
				switch rng.Intn(5) {
				case 0:
					rec["zone"] = "z1"
				case 1:
					rec["zone"] = "z2"
				case 2:
					rec["kind"] = "ev"
				case 3:
					rec["spot"] = simSpots[rng.Intn(len(simSpots))].id
				}
				if retryKey[c] != "" {
					op.key = retryKey[c]
				} else if rng.Intn(keyOneIn) == 0 {
					keySeq++
					op.key = fmt.Sprintf("k%d", keySeq)
				}
				if op.key != "" {
					rec["key"] = op.key
				}
			case r < 8:
				rec["op"] = "cancel"
				rec["booking"] = known[c][rng.Intn(len(known[c]))]
			default:
				rec["op"] = "get"
				rec["booking"] = known[c][rng.Intn(len(known[c]))]
			}
			op.lost = rng.Intn(lossOneIn) == 0
			op.applies = !op.lost || rng.Intn(2) == 0
			pending[c] = op
		}
	}
	for _, op := range pending {
		if op != nil && op.effect < ticks && op.rec["ok"] != nil {
			op.rec["return_ns"] = int64(op.ret) * 1000
			emit(op)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestHistoriesOfACorrectServerPass(t *testing.T) {
	for seed := int64(1); seed <= 12; seed++ {
		h := simulate(seed, 6, 1200)
		r := checkHistory(t, simLayout, h)
		if r.code != 0 {
			t.Fatalf("seed %d: exit %d\n%s%s", seed, r.code, r.stdout, r.stderr)
		}
		if seed == 1 {
			t.Logf("seed 1: %s", strings.TrimSpace(r.stdout))
		}
	}
}

func TestTheSameHistoriesWithOneDoubleBookingFail(t *testing.T) {
	failed := 0
	for seed := int64(1); seed <= 6; seed++ {
		h := doubleBookOnce(simulate(seed, 6, 1200))
		if h == "" {
			continue
		}
		r := checkHistory(t, simLayout, h)
		if r.code != 1 {
			t.Fatalf("seed %d: exit %d, want 1\n%s%s", seed, r.code, r.stdout, r.stderr)
		}
		failed++
	}
	if failed < 4 {
		t.Fatalf("only %d seeds had a booking to corrupt", failed)
	}
}

// doubleBookOnce appends, after everything, a named booking of a spot that
// an acknowledged booking took and that nothing ever cancelled.
func doubleBookOnce(h string) string {
	holders := map[string]string{}
	var end int64
	for _, line := range strings.Split(strings.TrimSpace(h), "\n") {
		var r map[string]interface{}
		_ = json.Unmarshal([]byte(line), &r)
		if ret, ok := r["return_ns"].(float64); ok && int64(ret) > end {
			end = int64(ret)
		}
		if r["op"] == "book" && r["ok"] == true && r["http"] == 201.0 {
			holders[r["booking"].(string)] = r["got_spot"].(string)
		}
		if r["op"] == "cancel" {
			delete(holders, r["booking"].(string)) // even an unknown-outcome cancel
		}
	}
	for _, spot := range holders {
		return h + fmt.Sprintf(`{"client":99,"call_ns":%d,"return_ns":%d,"op":"book","facility":"f1","spot":%q,"ok":true,"booking":"bk_dup","got_spot":%q}`+"\n", end+1, end+2, spot, spot)
	}
	return ""
}
