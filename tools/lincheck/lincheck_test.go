// Tests of the checker's promises, one test per promise, each running the
// command's own entry point on a small history written as the README says.
package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testLayout: zone z1 has P-1, P-2 (standard) and P-3 (ev); zone z2 has P-4.
const testLayout = `{"facility":"f1","zones":[
 {"id":"z1","spots":[{"id":"P-1","kind":"standard"},{"id":"P-2","kind":"standard"},{"id":"P-3","kind":"ev"}]},
 {"id":"z2","spots":[{"id":"P-4"}]}]}`

// oneSpot: facility f1 with a single spot P-1.
const oneSpot = `{"facility":"f1","zones":[{"id":"z1","spots":[{"id":"P-1","kind":"standard"}]}]}`

type result struct {
	code           int
	stdout, stderr string
}

func checkHistory(t *testing.T, layout, history string, extra ...string) result {
	t.Helper()
	dir := t.TempDir()
	lp := filepath.Join(dir, "layout.json")
	hp := filepath.Join(dir, "history.jsonl")
	if err := os.WriteFile(lp, []byte(layout), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hp, []byte(history), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := append([]string{"--layout", lp}, extra...)
	args = append(args, hp)
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func expect(t *testing.T, r result, code int, mention string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	if mention != "" && !strings.Contains(r.stdout+r.stderr, mention) {
		t.Fatalf("output does not mention %q\nstdout:\n%s\nstderr:\n%s", mention, r.stdout, r.stderr)
	}
}

func TestALegalConcurrentHistoryPasses(t *testing.T) {
	h := lines(
		// three clients book at once and get the three spots of z1 in some order
		`{"client":0,"call_ns":0,"return_ns":50,"op":"book","facility":"f1","zone":"z1","spot":null,"kind":null,"ok":true,"http":201,"booking":"bk_a","got_spot":"P-2","status":"CONFIRMED","error":null}`,
		`{"client":1,"call_ns":5,"return_ns":40,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
		`{"client":2,"call_ns":10,"return_ns":60,"op":"book","facility":"f1","zone":"z1","kind":"ev","ok":true,"booking":"bk_c","got_spot":"P-3"}`,
		// z1 is full: refused; concurrently client 1 cancels, so the named booking of P-1 may win
		`{"client":3,"call_ns":70,"return_ns":80,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
		`{"client":1,"call_ns":85,"return_ns":120,"op":"cancel","facility":"f1","booking":"bk_b","ok":true,"status":"CANCELLED"}`,
		`{"client":3,"call_ns":90,"return_ns":130,"op":"book","facility":"f1","spot":"P-1","ok":true,"booking":"bk_d","got_spot":"P-1"}`,
		`{"client":0,"call_ns":95,"return_ns":100,"op":"book","facility":"f1","spot":"P-4","ok":true,"booking":"bk_e","got_spot":"P-4"}`,
		`{"client":1,"call_ns":140,"return_ns":150,"op":"cancel","facility":"f1","booking":"bk_b","ok":false,"http":409,"error":"invalid_booking_state"}`,
		`{"client":1,"call_ns":155,"return_ns":160,"op":"get","facility":"f1","booking":"bk_b","ok":true,"status":"CANCELLED","got_spot":"P-1"}`,
		`{"client":2,"call_ns":155,"return_ns":165,"op":"get","facility":"f1","booking":"bk_d","ok":true,"status":"CONFIRMED"}`,
		`{"client":2,"call_ns":170,"return_ns":175,"op":"get","facility":"f1","booking":"bk_nope","ok":false,"http":404,"error":"unknown_booking"}`,
		`{"client":0,"call_ns":170,"return_ns":180,"op":"book","facility":"f1","zone":"z1","ok":false,"http":400,"error":"invalid_plate"}`,
	)
	r := checkHistory(t, testLayout, h)
	expect(t, r, 0, "lincheck: linearizable: 12 ops (0 unknown outcome) in 1 partitions")
	if strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Fatalf("want a one-line summary, got:\n%s", r.stdout)
	}
}

func TestADoubleBookingOfOneSpotFails(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":50,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":1,"call_ns":10,"return_ns":60,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
	)
	r := checkHistory(t, testLayout, h)
	expect(t, r, 1, "spot P-1 is held by live booking")
	expect(t, r, 1, "lincheck: NOT linearizable")
	expect(t, r, 1, "failing: f1")
}

func TestADoubleBookingAfterACancelThatCameLaterFails(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","spot":"P-1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":1,"call_ns":20,"return_ns":30,"op":"book","facility":"f1","spot":"P-1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
		`{"client":0,"call_ns":40,"return_ns":50,"op":"cancel","facility":"f1","booking":"bk_a","ok":true}`,
	)
	expect(t, checkHistory(t, testLayout, h), 1, "NOT linearizable")
}

func TestNoSpotAvailableWhileASpotWasProvablyFreeFails(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":30,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-2"}`,
		// P-3 (ev) was never booked: refusing any spot of z1 is wrong
		`{"client":1,"call_ns":40,"return_ns":50,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 1, "spot P-3 was free")
}

func TestNoSpotAvailableForAKindWithNoFreeSpotOfItPasses(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","kind":"ev","ok":true,"booking":"bk_a","got_spot":"P-3"}`,
		`{"client":1,"call_ns":20,"return_ns":30,"op":"book","facility":"f1","kind":"ev","ok":false,"http":409,"error":"no_spot_available"}`,
		`{"client":1,"call_ns":40,"return_ns":50,"op":"book","facility":"f1","spot":"P-3","ok":false,"http":409,"error":"spot_not_available"}`,
		`{"client":1,"call_ns":60,"return_ns":70,"op":"book","facility":"f1","spot":"P-2","kind":"ev","ok":false,"http":409,"error":"spot_not_available"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 0, "linearizable")
}

func TestASpotNotAvailableForAFreeSpotFails(t *testing.T) {
	h := lines(
		`{"client":1,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","spot":"P-4","ok":false,"http":409,"error":"spot_not_available"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 1, "spot P-4 was free")
}

func TestAGivenSpotMustFitTheRequest(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z2","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 1, "does not fit the request")
}

func TestAnUnknownOutcomeBookingMayHaveTakenEffect(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1"}`,
		// only explainable if the unanswered booking took P-1
		`{"client":1,"call_ns":100,"return_ns":110,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 0, "1 unknown outcome")
}

func TestAnUnknownOutcomeBookingMayNotHaveTakenEffect(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1"}`,
		// only explainable if it did not (or not yet)
		`{"client":1,"call_ns":100,"return_ns":110,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 0, "linearizable")
}

func TestAnUnknownOutcomeBookingCannotBothHaveAndNotHaveTakenEffect(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1"}`,
		// the refusal proves it took P-1 before t=110 ...
		`{"client":1,"call_ns":100,"return_ns":110,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
		// ... so nobody can book P-1 afterwards: nothing cancelled it
		`{"client":2,"call_ns":200,"return_ns":210,"op":"book","facility":"f1","spot":"P-1","ok":true,"booking":"bk_c","got_spot":"P-1"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 1, "spot P-1 was proved held by an unanswered booking")
}

// twoSpots: facility f1 with P-1 and P-2 in zone z1.
const twoSpots = `{"facility":"f1","zones":[{"id":"z1","spots":[{"id":"P-1"},{"id":"P-2"}]}]}`

func TestEachUnansweredBookingHoldsAtMostOneSpot(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1"}`,
		// two free spots refused, one unanswered request: cannot hold both
		`{"client":1,"call_ns":100,"return_ns":110,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
	)
	expect(t, checkHistory(t, twoSpots, h), 1, "cannot hold them all")
}

func TestUnansweredBookingsHoldDistinctSpotsUntilTheirRetriesNameThem(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1","key":"a"}`,
		`{"client":1,"call_ns":5,"return_ns":null,"op":"book","facility":"f1","zone":"z1","key":"b"}`,
		`{"client":2,"call_ns":100,"return_ns":110,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
		// the retry of "a" names P-2, so "b" holds P-1 ...
		`{"client":0,"call_ns":120,"return_ns":130,"op":"book","facility":"f1","zone":"z1","key":"a","ok":true,"booking":"bk_a","got_spot":"P-2"}`,
		`{"client":0,"call_ns":140,"return_ns":150,"op":"cancel","facility":"f1","booking":"bk_a","ok":true}`,
		`{"client":2,"call_ns":160,"return_ns":170,"op":"book","facility":"f1","spot":"P-2","ok":true,"booking":"bk_c","got_spot":"P-2"}`,
	)
	expect(t, checkHistory(t, twoSpots, h), 0, "linearizable")
	// ... and nobody else may get P-1
	h += lines(`{"client":3,"call_ns":180,"return_ns":190,"op":"book","facility":"f1","spot":"P-1","ok":true,"booking":"bk_d","got_spot":"P-1"}`)
	expect(t, checkHistory(t, twoSpots, h), 1, "spot P-1 was proved held by an unanswered booking")
}

func TestAnUnknownOutcomeCancelTakesEffectAtOneInstant(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":null,"op":"cancel","facility":"f1","booking":"bk_a"}`,
		`{"client":1,"call_ns":30,"return_ns":40,"op":"get","facility":"f1","booking":"bk_a","ok":true,"status":"CONFIRMED"}`,
		`{"client":1,"call_ns":50,"return_ns":60,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
	)
	// it applied between the read and the booking
	expect(t, checkHistory(t, oneSpot, h), 0, "linearizable")
	// but once applied it stays applied
	h += lines(`{"client":2,"call_ns":70,"return_ns":80,"op":"get","facility":"f1","booking":"bk_a","ok":true,"status":"CONFIRMED"}`)
	expect(t, checkHistory(t, oneSpot, h), 1, "bk_a is CANCELLED in the model, answered CONFIRMED")
}

func TestAServerErrorIsAnUnknownOutcome(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":false,"http":503,"error":"storage_unavailable"}`,
		`{"client":1,"call_ns":20,"return_ns":30,"op":"book","facility":"f1","zone":"z1","ok":false,"http":null,"error":"connection_reset"}`,
		// two spots of z1 refused: only explainable if both failed requests applied (P-3 is ev, named away below)
		`{"client":2,"call_ns":40,"return_ns":45,"op":"book","facility":"f1","spot":"P-3","ok":true,"booking":"bk_c","got_spot":"P-3"}`,
		`{"client":2,"call_ns":50,"return_ns":60,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 0, "2 unknown outcome")
}

func TestADefiniteRefusalIsNotAnUnknownOutcome(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":false,"http":429,"error":"rate_limited"}`,
		// a 429 applied nothing, so the spot was free
		`{"client":1,"call_ns":20,"return_ns":30,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 1, "spot P-1 was free")
}

func TestARetryWithTheSameKeyRevealsTheUnknownBooking(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1","key":"c0-1"}`,
		`{"client":1,"call_ns":10,"return_ns":20,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-2"}`,
		// the retry is a replay (200): the first request had made bk_a on P-1
		`{"client":0,"call_ns":30,"return_ns":40,"op":"book","facility":"f1","zone":"z1","key":"c0-1","ok":true,"http":200,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":50,"return_ns":60,"op":"book","facility":"f1","zone":"z1","key":"c0-1","ok":true,"http":200,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":70,"return_ns":80,"op":"cancel","facility":"f1","booking":"bk_a","ok":true}`,
	)
	expect(t, checkHistory(t, testLayout, h), 0, "linearizable")
}

func TestAReplayMustNameTheSpotItsBookingHolds(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","key":"c0-1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":30,"op":"book","facility":"f1","zone":"z1","key":"c0-1","ok":true,"booking":"bk_a","got_spot":"P-2"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 1, "the replay of bk_a names spot P-2")
}

func TestAReplayCannotRevealASpotSomeoneElseHeld(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","zone":"z1","key":"c0-1"}`,
		`{"client":1,"call_ns":10,"return_ns":20,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-2"}`,
		`{"client":0,"call_ns":30,"return_ns":40,"op":"book","facility":"f1","zone":"z1","key":"c0-1","ok":true,"http":200,"booking":"bk_a","got_spot":"P-2"}`,
	)
	expect(t, checkHistory(t, testLayout, h), 1, "NOT linearizable")
}

func TestAnUnknownOutcomeCancelMayHaveTakenEffect(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":null,"op":"cancel","facility":"f1","booking":"bk_a"}`,
		`{"client":1,"call_ns":30,"return_ns":40,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 0, "linearizable")
}

func TestAnUnknownOutcomeCancelMayNotHaveTakenEffect(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":30,"op":"cancel","facility":"f1","booking":"bk_a","ok":false,"http":504,"error":"timeout"}`,
		`{"client":1,"call_ns":40,"return_ns":50,"op":"get","facility":"f1","booking":"bk_a","ok":true,"status":"CONFIRMED"}`,
		`{"client":1,"call_ns":60,"return_ns":70,"op":"book","facility":"f1","zone":"z1","ok":false,"http":409,"error":"no_spot_available"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 0, "linearizable")
}

func TestAnAcknowledgedBookingThatDisappearsFails(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":1,"call_ns":20,"return_ns":30,"op":"get","facility":"f1","booking":"bk_a","ok":false,"http":404,"error":"unknown_booking"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 1, "bk_a exists (CONFIRMED) but was answered unknown")
}

func TestAReadAfterAnAcknowledgedCancelSeesIt(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":30,"op":"cancel","facility":"f1","booking":"bk_a","ok":true}`,
		`{"client":1,"call_ns":40,"return_ns":50,"op":"get","facility":"f1","booking":"bk_a","ok":true,"status":"CONFIRMED"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 1, "bk_a is CANCELLED in the model, answered CONFIRMED")
}

func TestAnExpiredStatusIsReportedAsUnexplained(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":30,"op":"get","facility":"f1","booking":"bk_a","ok":true,"status":"EXPIRED"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 1, "models no expiry")
}

func TestARefusedCancelOfAConfirmedBookingIsReportedAsUnexplained(t *testing.T) {
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","zone":"z1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":0,"call_ns":20,"return_ns":30,"op":"cancel","facility":"f1","booking":"bk_a","ok":false,"http":409,"error":"invalid_booking_state"}`,
	)
	expect(t, checkHistory(t, oneSpot, h), 1, "needs an expiry or an arrival")
}

func TestFacilitiesArePartitionsThatDoNotInteract(t *testing.T) {
	layout := `[` + oneSpot + `,{"facility":"f2","zones":[{"id":"z1","spots":[{"id":"P-1"}]}]}]`
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","spot":"P-1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":1,"call_ns":0,"return_ns":10,"op":"book","facility":"f2","spot":"P-1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
	)
	expect(t, checkHistory(t, layout, h), 0, "2 ops (0 unknown outcome) in 2 partitions (facilities f1, f2)")
}

func TestTheVisualizationIsWrittenWhenAsked(t *testing.T) {
	viz := filepath.Join(t.TempDir(), "viz.html")
	h := lines(
		`{"client":0,"call_ns":0,"return_ns":50,"op":"book","facility":"f1","ok":true,"booking":"bk_a","got_spot":"P-1"}`,
		`{"client":1,"call_ns":10,"return_ns":60,"op":"book","facility":"f1","ok":true,"booking":"bk_b","got_spot":"P-1"}`,
	)
	expect(t, checkHistory(t, oneSpot, h, "--viz", viz), 1, "visualization written to")
	data, err := os.ReadFile(viz)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("<html")) || !bytes.Contains(data, []byte("bk_b")) {
		t.Fatalf("viz is not porcupine's HTML naming the operations (%d bytes)", len(data))
	}
}

func TestMalformedInputExitsTwo(t *testing.T) {
	ok := `{"client":0,"call_ns":0,"return_ns":10,"op":"book","facility":"f1","ok":true,"booking":"bk_a","got_spot":"P-1"}`
	cases := map[string]struct{ layout, history string }{
		"not json":               {oneSpot, "{not json\n"},
		"unknown field":          {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"book","facility":"f1","ok":false,"http":503,"colour":"red"}` + "\n"},
		"unknown op":             {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"delete","facility":"f1","ok":true}` + "\n"},
		"no client":              {oneSpot, `{"call_ns":0,"return_ns":1,"op":"book","facility":"f1","ok":false,"http":503}` + "\n"},
		"return before call":     {oneSpot, `{"client":0,"call_ns":10,"return_ns":1,"op":"book","facility":"f1","ok":false,"http":503}` + "\n"},
		"no ok":                  {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"book","facility":"f1"}` + "\n"},
		"ack without booking":    {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"book","facility":"f1","ok":true,"got_spot":"P-1"}` + "\n"},
		"refusal without code":   {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"book","facility":"f1","ok":false,"http":409}` + "\n"},
		"answer without return":  {oneSpot, `{"client":0,"call_ns":0,"return_ns":null,"op":"book","facility":"f1","ok":true,"booking":"b","got_spot":"P-1"}` + "\n"},
		"cancel without booking": {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"cancel","facility":"f1","ok":true}` + "\n"},
		"unknown status":         {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"get","facility":"f1","booking":"b","ok":true,"status":"GONE"}` + "\n"},
		"facility not in layout": {oneSpot, `{"client":0,"call_ns":0,"return_ns":1,"op":"book","facility":"f9","ok":false,"http":503}` + "\n"},
		"booking in two facilities": {`[` + oneSpot + `,{"facility":"f2","zones":[]}]`, ok + "\n" +
			`{"client":0,"call_ns":20,"return_ns":30,"op":"get","facility":"f2","booking":"bk_a","ok":true}` + "\n"},
		"empty history":       {oneSpot, "\n"},
		"counter zone layout": {`{"facility":"f1","zones":[{"id":"z1","capacity":10}]}`, ok + "\n"},
		"bad layout":          {`{"facility":"f1","zones":[{"id":"z1","spots":[{"id":"P-1","kind":"tank"}]}]}`, ok + "\n"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := checkHistory(t, c.layout, c.history)
			if r.code != 2 || !strings.Contains(r.stderr, "lincheck: ") {
				t.Fatalf("exit %d, want 2 with a message\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"history.jsonl"}, strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Fatalf("no --layout: exit %d, want 2", code)
	}
}
