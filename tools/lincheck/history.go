// history.go reads the two inputs, a JSON Lines history of booking
// operations and a layout file, and turns them into porcupine operations
// over per-facility tables (spots, zones, interned booking ids and keys).
//
// It decides, once and for all, which answers are definite and which leave
// the outcome unknown (see classify). It must never guess: a line it does
// not understand is bad input (exit 2), not a skipped line.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// badInput is an error in the history or layout: exit 2.
type badInput struct{ msg string }

func (e *badInput) Error() string { return e.msg }

func bad(format string, args ...interface{}) error {
	return &badInput{msg: fmt.Sprintf(format, args...)}
}

// spotKinds is the contract's closed set of spot kinds.
var spotKinds = map[string]bool{
	"standard": true, "ev": true, "accessible": true, "motorcycle": true, "compact": true,
}

// ---------------------------------------------------------------- layout

type layoutFile struct {
	Facility string       `json:"facility"`
	Zones    []layoutZone `json:"zones"`
}

type layoutZone struct {
	ID       string       `json:"id"`
	Name     *string      `json:"name"`
	Capacity *int64       `json:"capacity"`
	Kind     *string      `json:"kind"`
	Spots    []layoutSpot `json:"spots"`
}

type layoutSpot struct {
	ID   string  `json:"id"`
	Kind *string `json:"kind"`
}

// spotInfo is one spot of a facility's layout.
type spotInfo struct {
	id, zone, kind string
}

// universe is everything about one facility that never changes during a
// check: its spots and the interned ids that its operations name.
type universe struct {
	facility  string
	spots     []spotInfo
	spotIndex map[string]int
	zones     map[string]bool
	bookings  map[string]int32
	bookingID []string
	keys      map[string]int32
	keyID     []string
	fits      map[string]bitset // fit key -> spots that fit a request
}

func (u *universe) internBooking(id string) int32 {
	if i, ok := u.bookings[id]; ok {
		return i
	}
	i := int32(len(u.bookingID))
	u.bookings[id] = i
	u.bookingID = append(u.bookingID, id)
	return i
}

func (u *universe) internKey(key string) int32 {
	if i, ok := u.keys[key]; ok {
		return i
	}
	i := int32(len(u.keyID))
	u.keys[key] = i
	u.keyID = append(u.keyID, key)
	return i
}

// fit returns the spots that a request for (zone, kind, spot) may be given;
// "" means the request does not name that field.
func (u *universe) fit(zone, kind, spot string) bitset {
	key := zone + "\x00" + kind + "\x00" + spot
	if b, ok := u.fits[key]; ok {
		return b
	}
	b := newBitset(len(u.spots))
	for i, s := range u.spots {
		if (zone == "" || s.zone == zone) && (kind == "" || s.kind == kind) && (spot == "" || s.id == spot) {
			b.set(i)
		}
	}
	u.fits[key] = b
	return b
}

// readLayouts parses a layout file: one facility object or an array of them.
func readLayouts(data []byte) (map[string]*universe, error) {
	data = bytes.TrimSpace(data)
	var files []layoutFile
	if len(data) > 0 && data[0] == '[' {
		if err := strictUnmarshal(data, &files); err != nil {
			return nil, bad("layout: %v", err)
		}
	} else {
		var one layoutFile
		if err := strictUnmarshal(data, &one); err != nil {
			return nil, bad("layout: %v", err)
		}
		files = []layoutFile{one}
	}
	out := make(map[string]*universe)
	for _, f := range files {
		if f.Facility == "" {
			return nil, bad("layout: a facility without \"facility\" id")
		}
		if _, dup := out[f.Facility]; dup {
			return nil, bad("layout: facility %q given twice", f.Facility)
		}
		u := &universe{
			facility:  f.Facility,
			spotIndex: make(map[string]int),
			zones:     make(map[string]bool),
			bookings:  make(map[string]int32),
			keys:      make(map[string]int32),
			fits:      make(map[string]bitset),
		}
		for _, z := range f.Zones {
			if z.ID == "" {
				return nil, bad("layout %s: a zone without \"id\"", f.Facility)
			}
			if u.zones[z.ID] {
				return nil, bad("layout %s: zone %q given twice", f.Facility, z.ID)
			}
			if z.Capacity != nil {
				return nil, bad("layout %s: zone %q is a counter zone (capacity); counter zones are not modelled by this checker", f.Facility, z.ID)
			}
			u.zones[z.ID] = true
			for _, s := range z.Spots {
				if s.ID == "" {
					return nil, bad("layout %s: a spot of zone %q without \"id\"", f.Facility, z.ID)
				}
				if _, dup := u.spotIndex[s.ID]; dup {
					return nil, bad("layout %s: spot %q given twice", f.Facility, s.ID)
				}
				kind := "standard"
				if s.Kind != nil {
					kind = *s.Kind
				}
				if !spotKinds[kind] {
					return nil, bad("layout %s: spot %q has unknown kind %q", f.Facility, s.ID, kind)
				}
				u.spotIndex[s.ID] = len(u.spots)
				u.spots = append(u.spots, spotInfo{id: s.ID, zone: z.ID, kind: kind})
			}
		}
		out[f.Facility] = u
	}
	return out, nil
}

// --------------------------------------------------------------- history

// record is one line of the history, exactly as the README defines it.
type record struct {
	Client   *int64  `json:"client"`
	CallNs   *int64  `json:"call_ns"`
	ReturnNs *int64  `json:"return_ns"`
	Op       string  `json:"op"`
	Facility string  `json:"facility"`
	Node     *string `json:"node"`
	Zone     *string `json:"zone"`
	Spot     *string `json:"spot"`
	Kind     *string `json:"kind"`
	Key      *string `json:"key"`
	Booking  *string `json:"booking"`
	Ok       *bool   `json:"ok"`
	HTTP     *int    `json:"http"`
	GotSpot  *string `json:"got_spot"`
	Status   *string `json:"status"`
	Error    *string `json:"error"`
}

type opKind int

const (
	opBook opKind = iota
	opCancel
	opGet
)

func (k opKind) String() string {
	return [...]string{"book", "cancel", "get"}[k]
}

type outcome int

const (
	answered outcome = iota // ok: true
	refused                 // a definite refusal: nothing happened, or the code says why
	unknown                 // no answer, or one that does not say whether it applied
)

// input is what a client asked; it points at its facility's universe.
type input struct {
	u       *universe
	line    int
	client  int
	op      opKind
	zone    string
	kind    string
	spot    string
	fit     bitset // book: the spots that fit
	booking int32  // cancel, get: the booking named; -1 for book
	key     int32  // book: idempotency key, -1 if none
}

// output is what it was told.
type output struct {
	outcome outcome
	code    string // error code of a refusal (or of an unknown-outcome failure)
	http    int    // 0 when not recorded
	booking int32  // book answered: the booking id; -1 otherwise
	gotSpot int    // answered: index of got_spot; -1 not given; -2 not in the layout
	gotName string // got_spot as written
	status  string // answered: the booking's status, "" if not recorded
}

// history is a parsed input: operations grouped by facility.
type history struct {
	partitions map[string][]porcupine.Operation
	order      []string // facilities in first-seen order
	ops        int
	unknowns   int
}

// classify applies the rule of the README: an answer is definite only if
// it is a success, or a refusal with a 4xx status other than 408. Anything
// else (no answer, a transport error, 408, 5xx such as 503
// storage_unavailable) may or may not have taken effect, now or later.
func classify(r *record) outcome {
	if r.ReturnNs == nil {
		return unknown
	}
	if r.Ok != nil && *r.Ok {
		return answered
	}
	if r.HTTP != nil && *r.HTTP >= 400 && *r.HTTP <= 499 && *r.HTTP != 408 {
		return refused
	}
	return unknown
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func strictUnmarshal(data []byte, v interface{}) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// readHistory parses the JSON Lines history against the layouts.
func readHistory(r io.Reader, layouts map[string]*universe) (*history, error) {
	h := &history{partitions: make(map[string][]porcupine.Operation)}
	bookingFacility := make(map[string]string)
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 16*1024*1024)
	line := 0
	for scanner.Scan() {
		line++
		text := strings.TrimSpace(scanner.Text())
		if text == "" {
			continue
		}
		var rec record
		if err := strictUnmarshal([]byte(text), &rec); err != nil {
			return nil, bad("history line %d: %v", line, err)
		}
		op, err := convert(&rec, line, layouts)
		if err != nil {
			return nil, err
		}
		in := op.Input.(*input)
		if in.op != opBook || op.Output.(*output).booking >= 0 {
			if id := str(rec.Booking); id != "" {
				if f, seen := bookingFacility[id]; seen && f != rec.Facility {
					return nil, bad("history line %d: booking %q is in facility %q but was seen in %q", line, id, rec.Facility, f)
				}
				bookingFacility[id] = rec.Facility
			}
		}
		if _, seen := h.partitions[rec.Facility]; !seen {
			h.order = append(h.order, rec.Facility)
		}
		h.partitions[rec.Facility] = append(h.partitions[rec.Facility], op)
		h.ops++
		if op.Output.(*output).outcome == unknown {
			h.unknowns++
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, bad("history line %d: %v", line+1, err)
	}
	if h.ops == 0 {
		return nil, bad("history: no operations")
	}
	sort.Strings(h.order)
	return h, nil
}

// convert validates one record and makes it a porcupine operation.
func convert(rec *record, line int, layouts map[string]*universe) (porcupine.Operation, error) {
	fail := func(format string, args ...interface{}) (porcupine.Operation, error) {
		return porcupine.Operation{}, bad("history line %d: %s", line, fmt.Sprintf(format, args...))
	}
	if rec.Client == nil || *rec.Client < 0 || *rec.Client > math.MaxInt32 {
		return fail("\"client\" must be a non-negative integer")
	}
	if rec.CallNs == nil {
		return fail("\"call_ns\" is required")
	}
	if rec.ReturnNs != nil && *rec.ReturnNs < *rec.CallNs {
		return fail("\"return_ns\" %d is before \"call_ns\" %d", *rec.ReturnNs, *rec.CallNs)
	}
	if rec.Facility == "" {
		return fail("\"facility\" is required")
	}
	u, ok := layouts[rec.Facility]
	if !ok {
		return fail("facility %q is not in the layout file", rec.Facility)
	}
	if rec.ReturnNs == nil && (rec.Ok != nil || rec.HTTP != nil || rec.GotSpot != nil || rec.Status != nil || rec.Error != nil) {
		return fail("an operation with \"return_ns\": null has no answer fields (ok, http, got_spot, status, error)")
	}
	if rec.ReturnNs != nil && rec.Ok == nil {
		return fail("\"ok\" is required when \"return_ns\" is set")
	}
	if rec.Ok != nil && *rec.Ok && rec.Error != nil {
		return fail("\"ok\": true with an \"error\"")
	}
	if rec.Ok != nil && !*rec.Ok && rec.HTTP != nil && *rec.HTTP >= 400 && *rec.HTTP <= 499 && str(rec.Error) == "" {
		return fail("a %d refusal needs its \"error\" code", *rec.HTTP)
	}
	if rec.HTTP != nil && (*rec.HTTP < 100 || *rec.HTTP > 599) {
		return fail("\"http\" %d is not an HTTP status", *rec.HTTP)
	}
	if rec.Ok != nil && *rec.Ok && rec.HTTP != nil && (*rec.HTTP < 200 || *rec.HTTP > 299) {
		return fail("\"ok\": true with \"http\" %d", *rec.HTTP)
	}
	if rec.Status != nil && !knownStatus[*rec.Status] {
		return fail("unknown booking status %q", *rec.Status)
	}
	in := &input{u: u, line: line, client: int(*rec.Client), booking: -1, key: -1}
	out := &output{outcome: classify(rec), code: str(rec.Error), booking: -1, gotSpot: -1}
	if rec.HTTP != nil {
		out.http = *rec.HTTP
	}
	switch rec.Op {
	case "book":
		in.op = opBook
		in.zone, in.kind, in.spot = str(rec.Zone), str(rec.Kind), str(rec.Spot)
		if in.kind != "" && !spotKinds[in.kind] {
			// The server refuses an unknown kind with a 400; nothing fits it.
			in.kind = "\x00" + in.kind
		}
		in.fit = u.fit(in.zone, in.kind, in.spot)
		if rec.Key != nil {
			if *rec.Key == "" {
				return fail("\"key\" must not be empty")
			}
			in.key = u.internKey(*rec.Key)
		}
		if out.outcome == answered {
			if str(rec.Booking) == "" {
				return fail("an acknowledged book needs \"booking\"")
			}
			if rec.GotSpot == nil {
				return fail("an acknowledged book needs \"got_spot\" (counter zones are not modelled)")
			}
			out.booking = u.internBooking(*rec.Booking)
		} else if rec.Booking != nil {
			return fail("\"booking\" is only for an acknowledged book")
		}
	case "cancel", "get":
		in.op = opCancel
		if rec.Op == "get" {
			in.op = opGet
		}
		if str(rec.Booking) == "" {
			return fail("%s needs \"booking\"", rec.Op)
		}
		if rec.Zone != nil || rec.Spot != nil || rec.Kind != nil || rec.Key != nil {
			return fail("%s takes no zone, spot, kind or key", rec.Op)
		}
		in.booking = u.internBooking(*rec.Booking)
	default:
		return fail("unknown \"op\" %q (book, cancel or get)", rec.Op)
	}
	if rec.GotSpot != nil {
		if out.outcome != answered {
			return fail("\"got_spot\" is only for an acknowledged answer")
		}
		out.gotName = *rec.GotSpot
		if i, ok := u.spotIndex[*rec.GotSpot]; ok {
			out.gotSpot = i
		} else {
			out.gotSpot = -2
		}
	}
	if rec.Status != nil {
		if out.outcome != answered {
			return fail("\"status\" is only for an acknowledged answer")
		}
		out.status = *rec.Status
	}
	// An unknown outcome may take effect at any instant after its call, or
	// never. The model keeps that possibility open itself (a claim, a
	// pending cancel), so porcupine only has to place the call: the op ends
	// where it starts. (Porcupine's usual return-at-infinity would let it
	// try every later position as well, which the model makes redundant and
	// which is exponential in the number of unanswered requests.)
	ret := *rec.CallNs
	if out.outcome != unknown {
		ret = *rec.ReturnNs
	}
	return porcupine.Operation{
		ClientId: in.client,
		Input:    in,
		Call:     *rec.CallNs,
		Output:   out,
		Return:   ret,
		Metadata: str(rec.Node),
	}, nil
}

var knownStatus = map[string]bool{
	"SCHEDULED": true, "CONFIRMED": true, "ACTIVE": true, "COMPLETED": true,
	"EXPIRED": true, "CANCELLED": true,
}
