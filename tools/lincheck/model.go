// model.go is the sequential specification the history is checked against:
// one facility's spots, held one booking at a time.
//
// The state is the status of every booking the history names (and so which
// booking holds which spot), the idempotency keys that already booked, and
// what unanswered requests may have done. An unanswered book is a "claim"
// that may take effect at any instant after it is linearized, or never; it
// is given no spot until an answer needs it to hold one: a refusal that
// found no fitting spot free makes each fitting spot that no acknowledged
// booking held a "cover", held from then on by one of the claims eligible
// for it, and every step checks that distinct claims can hold all covers
// (a bipartite matching). An unanswered cancel leaves its booking
// CONFIRMED with the cancel pending, applied as late as an answer allows.
// Being lazy this way keeps the state the same wherever porcupine places an
// unanswered request, so its cache stays effective after a kill -9 cut off
// many requests at once.
//
// The model must never explain what it cannot: no expiry, arrival, sensor
// or out-of-service change is modelled, so an EXPIRED, ACTIVE or COMPLETED
// answer is refused, not waved through.
package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Booking statuses held in state.status.
const (
	absent        int32 = 0
	confirmed     int32 = 1
	cancelled     int32 = 2
	cancelPending int32 = 3 // CONFIRMED, with an unanswered cancel that may apply at any later instant
)

var statusName = map[int32]string{absent: "absent", confirmed: "CONFIRMED", cancelled: "CANCELLED", cancelPending: "CONFIRMED"}

// claim is an unanswered book request: it may take effect at any instant
// after it was registered, or never. Its id is its history line.
type claim struct {
	id  int32
	key int32 // idempotency key, -1 if none
	fit bitset
}

// cover is a spot that an answer proved held by some claim (it was free of
// acknowledged bookings when every fitting spot was refused); eligible are
// the claims that can be the one holding it.
type cover struct {
	spot     int
	eligible []int32 // sorted claim ids
}

type state struct {
	u      *universe
	status cow     // booking -> absent / confirmed / cancelled / cancelPending
	spotOf cow     // booking -> spot index + 1 (0: none yet)
	holder cow     // spot -> live or cancelPending booking + 1 (0: free of acknowledged bookings)
	keyOf  cow     // key -> booking + 1, or -(claim id + 1); 0: unused
	claims []claim // sorted by id
	covers []cover // sorted by spot
}

func initialState(u *universe) *state {
	atLeast1 := func(n int) int {
		if n < 1 {
			return 1
		}
		return n
	}
	return &state{
		u:      u,
		status: newCow(atLeast1(len(u.bookingID))),
		spotOf: newCow(atLeast1(len(u.bookingID))),
		holder: newCow(atLeast1(len(u.spots))),
		keyOf:  newCow(atLeast1(len(u.keyID))),
	}
}

// clone returns a shallow copy: the cows are values, the claim and cover
// slices are copied one level deep before anything changes them.
func (s *state) clone() *state {
	n := *s
	n.claims = append([]claim(nil), s.claims...)
	n.covers = append([]cover(nil), s.covers...)
	return &n
}

func (s *state) spotName(i int) string { return s.u.spots[i].id }

func (s *state) bookingName(b int32) string { return s.u.bookingID[b] }

// claimFit is the fit of claim id's request (empty if there is none).
func (s *state) claimFit(id int32) bitset {
	for _, c := range s.claims {
		if c.id == id {
			return c.fit
		}
	}
	return nil
}

func (s *state) coverOf(spot int) int {
	i := sort.Search(len(s.covers), func(i int) bool { return s.covers[i].spot >= spot })
	if i < len(s.covers) && s.covers[i].spot == spot {
		return i
	}
	return -1
}

// step is the model: the next state, or why this answer is impossible now.
func step(s *state, in *input, out *output) (*state, string) {
	switch in.op {
	case opBook:
		switch out.outcome {
		case unknown:
			return bookUnknown(s, in), ""
		case refused:
			return bookRefused(s, in, out)
		default:
			return bookAnswered(s, in, out)
		}
	case opCancel:
		return cancel(s, in, out)
	default:
		return get(s, in, out)
	}
}

func bookUnknown(s *state, in *input) *state {
	if in.key >= 0 {
		k := s.keyOf.get(int(in.key))
		if k > 0 {
			return s // the key made a booking: the server replays it, nothing changes
		}
		if k < 0 {
			// Another unanswered request has the key: at most one of the
			// two can take effect. One claim fitting either stands for both
			// (it may let the second take effect a little early: lenient).
			n := s.clone()
			for i, c := range n.claims {
				if c.id == -k-1 {
					fit := c.fit.clone()
					for w := range fit {
						fit[w] |= in.fit[w]
					}
					n.claims[i] = claim{id: c.id, key: c.key, fit: fit}
				}
			}
			return n
		}
	}
	if in.fit.empty() {
		return s // nothing fits: it can only be refused
	}
	n := s.clone()
	id := int32(in.line)
	i := sort.Search(len(n.claims), func(i int) bool { return n.claims[i].id >= id })
	n.claims = append(n.claims, claim{})
	copy(n.claims[i+1:], n.claims[i:])
	n.claims[i] = claim{id: id, key: in.key, fit: in.fit}
	if in.key >= 0 {
		e := n.keyOf.edit()
		e.set(int(in.key), -(id + 1))
		n.keyOf = e.done()
	}
	return n
}

// notYet records that claim id had not taken effect by now: it holds none
// of the covered spots.
func notYet(n *state, id int32) {
	for i, c := range n.covers {
		if containsID(c.eligible, id) {
			n.covers[i] = cover{spot: c.spot, eligible: withoutID(c.eligible, id)}
		}
	}
}

// dropClaim removes claim id for good (it was bound, or its key was used
// by another request, after which it can only replay).
func dropClaim(n *state, id int32) {
	notYet(n, id)
	for i, c := range n.claims {
		if c.id == id {
			n.claims = append(n.claims[:i:i], n.claims[i+1:]...)
			return
		}
	}
}

func bookRefused(s *state, in *input, out *output) (*state, string) {
	switch out.code {
	case "no_spot_available", "spot_not_available":
	default:
		return s, "" // validation, auth, rate limit, unknown zone...: nothing happened
	}
	if out.code == "spot_not_available" && in.spot == "" {
		return s, "" // not an answer about one spot: nothing happened
	}
	n := s.clone()
	exclude := int32(-1)
	if in.key >= 0 {
		k := s.keyOf.get(int(in.key))
		if k > 0 {
			return nil, fmt.Sprintf("key %q already booked %s: a retry is replayed, not refused", s.u.keyID[in.key], s.bookingName(k-1))
		}
		if k < 0 {
			// A definite answer to a retry settles the key: had the first
			// request applied, this one would be its replay; and it cannot
			// apply later (README: "A retry settles its key").
			exclude = -k - 1
			dropClaim(n, exclude)
			e := n.keyOf.edit()
			e.set(int(in.key), 0)
			n.keyOf = e.done()
		}
	}
	var newly []int
	in.fit.each(func(spot int) bool {
		if s.holder.get(spot) == 0 && s.coverOf(spot) < 0 {
			newly = append(newly, spot)
		}
		return true
	})
	for _, spot := range newly {
		var eligible []int32
		for _, c := range n.claims {
			if c.id != exclude && c.fit.has(spot) {
				eligible = append(eligible, c.id)
			}
		}
		if len(eligible) == 0 {
			return nil, fmt.Sprintf("spot %s was free (and no unanswered booking could hold it)", s.spotName(spot))
		}
		i := sort.Search(len(n.covers), func(i int) bool { return n.covers[i].spot >= spot })
		n.covers = append(n.covers, cover{})
		copy(n.covers[i+1:], n.covers[i:])
		n.covers[i] = cover{spot: spot, eligible: eligible}
	}
	if !feasible(n) {
		return nil, fmt.Sprintf("%d spots were free of acknowledged bookings (%d newly) and distinct unanswered bookings cannot hold them all", len(n.covers), len(newly))
	}
	return n, ""
}

func bookAnswered(s *state, in *input, out *output) (*state, string) {
	b := out.booking
	if out.gotSpot == -2 {
		return nil, fmt.Sprintf("got spot %q, which is not in the layout", out.gotName)
	}
	n := s.clone()
	boundClaim := int32(-1)
	if in.key >= 0 {
		k := s.keyOf.get(int(in.key))
		if k > 0 {
			return replay(s, in, out, k-1)
		}
		if k < 0 {
			boundClaim = -k - 1
			fitsClaim := n.claimFit(boundClaim).has(out.gotSpot)
			if out.http == 201 || (out.http == 0 && !fitsClaim) {
				// created anew: the unanswered request had not applied, and now never will
				dropClaim(n, boundClaim)
				boundClaim = -1
			} else if !fitsClaim {
				return nil, fmt.Sprintf("the replay of key %q names spot %s, which the first request could not get", s.u.keyID[in.key], out.gotName)
			}
		}
	}
	if out.http == 200 && boundClaim < 0 {
		return nil, "answered 200 (a replay) but no earlier booking had its key"
	}
	if st := s.status.get(int(b)); st != absent {
		return nil, fmt.Sprintf("booking id %s already exists (%s)", s.bookingName(b), statusName[st])
	}
	if out.status != "" && out.status != "CONFIRMED" {
		return nil, fmt.Sprintf("a new booking is CONFIRMED, not %s", out.status)
	}
	spot := out.gotSpot
	if boundClaim < 0 && !in.fit.has(spot) {
		return nil, fmt.Sprintf("spot %s does not fit the request", out.gotName)
	}
	if why := vacate(n, spot); why != "" {
		return nil, why
	}
	if ci := n.coverOf(spot); ci >= 0 {
		if boundClaim < 0 || !containsID(n.covers[ci].eligible, boundClaim) {
			return nil, fmt.Sprintf("spot %s was proved held by an unanswered booking (a refusal found no free spot), and nothing freed it", out.gotName)
		}
		n.covers = append(n.covers[:ci:ci], n.covers[ci+1:]...)
	}
	if boundClaim >= 0 {
		dropClaim(n, boundClaim)
	}
	status, spotOf, holder := n.status.edit(), n.spotOf.edit(), n.holder.edit()
	status.set(int(b), confirmed)
	spotOf.set(int(b), int32(spot)+1)
	holder.set(spot, b+1)
	n.status, n.spotOf, n.holder = status.done(), spotOf.done(), holder.done()
	if in.key >= 0 {
		e := n.keyOf.edit()
		e.set(int(in.key), b+1)
		n.keyOf = e.done()
	}
	if !feasible(n) {
		return nil, fmt.Sprintf("spot %s: after this the unanswered bookings cannot hold every spot proved held", out.gotName)
	}
	return n, ""
}

// vacate makes spot free of acknowledged bookings if the model allows it:
// a booking on it whose cancel is pending is cancelled now.
func vacate(n *state, spot int) string {
	h := n.holder.get(spot)
	if h == 0 {
		return ""
	}
	b := h - 1
	if n.status.get(int(b)) == cancelPending {
		commitCancel(n, b)
		return ""
	}
	return fmt.Sprintf("spot %s is held by live booking %s", n.spotName(spot), n.bookingName(b))
}

func commitCancel(n *state, b int32) {
	status, holder := n.status.edit(), n.holder.edit()
	status.set(int(b), cancelled)
	holder.set(int(n.spotOf.get(int(b)))-1, 0)
	n.status, n.holder = status.done(), holder.done()
}

// replay: the key already made booking b; the server answers with it.
func replay(s *state, in *input, out *output, b int32) (*state, string) {
	name := s.bookingName(b)
	if out.booking != b {
		return nil, fmt.Sprintf("key %q made booking %s, yet the answer is %s", s.u.keyID[in.key], name, s.bookingName(out.booking))
	}
	if out.http == 201 {
		return nil, fmt.Sprintf("answered 201 (created) for key %q, which already made %s", s.u.keyID[in.key], name)
	}
	if got := int(s.spotOf.get(int(b))) - 1; got != out.gotSpot {
		return nil, fmt.Sprintf("the replay of %s names spot %s, the booking holds %s", name, out.gotName, s.spotName(got))
	}
	return readStatus(s, b, out.status)
}

// readStatus checks a status read of booking b (a get, a replay).
func readStatus(s *state, b int32, read string) (*state, string) {
	st := s.status.get(int(b))
	name := s.bookingName(b)
	switch {
	case read == "" || read == statusName[st] && st != cancelPending:
		return s, ""
	case st == cancelPending && read == "CONFIRMED":
		return s, "" // the pending cancel has not applied yet
	case st == cancelPending && read == "CANCELLED":
		n := s.clone()
		commitCancel(n, b)
		return n, ""
	}
	switch read {
	case "EXPIRED", "ACTIVE", "COMPLETED", "SCHEDULED":
		return nil, fmt.Sprintf("%s is %s: this checker models no expiry, arrival or reservation (record with long holds and no sensors)", name, read)
	}
	return nil, fmt.Sprintf("%s is %s in the model, answered %s", name, statusName[st], read)
}

func cancel(s *state, in *input, out *output) (*state, string) {
	b := in.booking
	st := s.status.get(int(b))
	name := s.bookingName(b)
	switch out.outcome {
	case unknown:
		if st != confirmed {
			return s, ""
		}
		n := *s
		e := n.status.edit()
		e.set(int(b), cancelPending)
		n.status = e.done()
		return &n, ""
	case refused:
		switch out.code {
		case "invalid_booking_state":
			switch st {
			case confirmed:
				return nil, fmt.Sprintf("%s is CONFIRMED in the model: refusing its cancel needs an expiry or an arrival, which histories for this checker must not have", name)
			case absent:
				return nil, fmt.Sprintf("%s does not exist yet", name)
			case cancelPending:
				n := s.clone()
				commitCancel(n, b)
				return n, ""
			}
			return s, ""
		case "unknown_booking", "not_found":
			if st != absent {
				return nil, fmt.Sprintf("%s exists (%s) but was answered unknown", name, statusName[st])
			}
			return s, ""
		}
		return s, ""
	}
	if st != confirmed && st != cancelPending {
		return nil, fmt.Sprintf("%s is %s, so it cannot be cancelled", name, statusName[st])
	}
	if out.status != "" && out.status != "CANCELLED" {
		return nil, fmt.Sprintf("a cancelled booking is CANCELLED, not %s", out.status)
	}
	if out.gotSpot != -1 && int(s.spotOf.get(int(b)))-1 != out.gotSpot {
		return nil, fmt.Sprintf("%s holds spot %s, not %s", name, s.spotName(int(s.spotOf.get(int(b)))-1), out.gotName)
	}
	n := s.clone()
	commitCancel(n, b)
	return n, ""
}

func get(s *state, in *input, out *output) (*state, string) {
	b := in.booking
	st := s.status.get(int(b))
	name := s.bookingName(b)
	switch out.outcome {
	case unknown:
		return s, ""
	case refused:
		if (out.code == "unknown_booking" || out.code == "not_found") && st != absent {
			return nil, fmt.Sprintf("%s exists (%s) but was answered unknown", name, statusName[st])
		}
		return s, ""
	}
	if st == absent {
		return nil, fmt.Sprintf("%s does not exist yet", name)
	}
	if out.gotSpot != -1 && int(s.spotOf.get(int(b)))-1 != out.gotSpot {
		return nil, fmt.Sprintf("%s holds spot %s, not %s", name, s.spotName(int(s.spotOf.get(int(b)))-1), out.gotName)
	}
	return readStatus(s, b, out.status)
}

func containsID(ids []int32, id int32) bool {
	i := sort.Search(len(ids), func(i int) bool { return ids[i] >= id })
	return i < len(ids) && ids[i] == id
}

func withoutID(ids []int32, id int32) []int32 {
	out := make([]int32, 0, len(ids))
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// feasible says whether distinct claims can hold every covered spot, each
// one it is eligible for (a bipartite matching saturating the covers).
func feasible(s *state) bool {
	taker := make(map[int32]int) // claim -> cover index
	var try func(ci int, seen map[int32]bool) bool
	try = func(ci int, seen map[int32]bool) bool {
		for _, id := range s.covers[ci].eligible {
			if seen[id] {
				continue
			}
			seen[id] = true
			if other, taken := taker[id]; !taken || try(other, seen) {
				taker[id] = ci
				return true
			}
		}
		return false
	}
	for ci := range s.covers {
		if !try(ci, make(map[int32]bool)) {
			return false
		}
	}
	return true
}

// ------------------------------------------------------- porcupine glue

// subsumedBy is porcupine's "Equal", called as Equal(new, cached) for two
// states reached by linearizing the same operations. It answers true when
// the new state is the cached one or more constrained than it: the same
// bookings, keys and claims, and every cover of the cached state also in
// the new one with no more eligible claims. Every step is monotone in the
// covers (fewer covers never make an answer impossible), so a new state
// that a failed cached state subsumes cannot succeed either, and porcupine
// may skip it. Without this, each order of concurrent operations that
// proves a different spot held starts a search of its own.
func subsumedBy(n, cached *state) bool {
	if n == cached {
		return true
	}
	if n == nil || cached == nil {
		return false
	}
	if n.u != cached.u || !n.status.equal(cached.status) || !n.spotOf.equal(cached.spotOf) || !n.keyOf.equal(cached.keyOf) ||
		len(n.claims) != len(cached.claims) || len(n.covers) < len(cached.covers) {
		return false
	}
	for i := range n.claims {
		if n.claims[i].id != cached.claims[i].id { // the id is the request's line: it fixes key and fit
			return false
		}
	}
	j := 0
	for _, c := range cached.covers {
		for j < len(n.covers) && n.covers[j].spot < c.spot {
			j++
		}
		if j == len(n.covers) || n.covers[j].spot != c.spot || !subsetIDs(n.covers[j].eligible, c.eligible) {
			return false
		}
	}
	return true
}

// subsetIDs says whether sorted a is a subset of sorted b.
func subsetIDs(a, b []int32) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
	}
	return true
}

// hashState hashes what subsumedBy compares exactly (not the covers).
func hashState(s *state) uint64 {
	if s == nil {
		return 0
	}
	h := s.status.hash ^ s.spotOf.hash*31 ^ s.keyOf.hash*131
	for _, c := range s.claims {
		h = (h ^ uint64(c.id)) * 1099511628211
	}
	return h
}

// current resolves the lazily created initial state of a partition.
func current(st interface{}, in *input) *state {
	s := st.(*state)
	if s == nil {
		return initialState(in.u)
	}
	return s
}

func newModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byFacility := make(map[string][]porcupine.Operation)
			var order []string
			for _, op := range history {
				f := op.Input.(*input).u.facility
				if _, seen := byFacility[f]; !seen {
					order = append(order, f)
				}
				byFacility[f] = append(byFacility[f], op)
			}
			sort.Strings(order)
			out := make([][]porcupine.Operation, 0, len(order))
			for _, f := range order {
				out = append(out, byFacility[f])
			}
			return out
		},
		Init: func() interface{} { return (*state)(nil) },
		Step: func(st, in, out interface{}) (bool, interface{}) {
			i := in.(*input)
			next, why := step(current(st, i), i, out.(*output))
			if why != "" {
				return false, nil
			}
			return true, next
		},
		Equal: func(a, b interface{}) bool { return subsumedBy(a.(*state), b.(*state)) },
		Hash:  func(s interface{}) uint64 { return hashState(s.(*state)) },
		DescribeOperation: func(in, out interface{}) string {
			return describeOp(in.(*input), out.(*output))
		},
		DescribeState: func(st interface{}) string { return describeState(st.(*state), 40) },
		DescribeOperationMetadata: func(m interface{}) string {
			if node, ok := m.(string); ok && node != "" {
				return "node " + node
			}
			return ""
		},
	}
}

func describeOp(in *input, out *output) string {
	var b strings.Builder
	switch in.op {
	case opBook:
		b.WriteString("book(")
		var args []string
		for _, kv := range [][2]string{{"zone", in.zone}, {"kind", in.kind}, {"spot", in.spot}} {
			if kv[1] != "" {
				args = append(args, kv[0]+"="+strings.TrimPrefix(kv[1], "\x00"))
			}
		}
		if in.key >= 0 {
			args = append(args, "key="+in.u.keyID[in.key])
		}
		b.WriteString(strings.Join(args, ", "))
		b.WriteString(")")
	default:
		fmt.Fprintf(&b, "%s(%s)", in.op, in.u.bookingID[in.booking])
	}
	b.WriteString(" -> ")
	switch out.outcome {
	case unknown:
		b.WriteString("unknown")
		if out.code != "" || out.http != 0 {
			fmt.Fprintf(&b, " (%d %s)", out.http, out.code)
		}
	case refused:
		fmt.Fprintf(&b, "%d %s", out.http, out.code)
	default:
		var parts []string
		if out.booking >= 0 {
			parts = append(parts, in.u.bookingID[out.booking])
		}
		if out.gotName != "" {
			parts = append(parts, "spot "+out.gotName)
		}
		if out.status != "" {
			parts = append(parts, out.status)
		}
		if len(parts) == 0 {
			parts = append(parts, "ok")
		}
		b.WriteString(strings.Join(parts, " "))
	}
	return b.String()
}

// describeState lists the live bookings (at most limit) and the claims.
func describeState(s *state, limit int) string {
	if s == nil {
		return "no bookings"
	}
	var held []string
	total := 0
	for spot := range s.u.spots {
		if h := s.holder.get(spot); h != 0 {
			total++
			if len(held) < limit {
				held = append(held, s.spotName(spot)+"="+s.bookingName(h-1))
			}
		}
	}
	out := fmt.Sprintf("%d of %d spots held", total, len(s.u.spots))
	if len(held) > 0 {
		out += ": " + strings.Join(held, ", ")
		if total > len(held) {
			out += ", ..."
		}
	}
	if len(s.claims) > 0 {
		out += fmt.Sprintf("; %d unanswered bookings may have taken effect", len(s.claims))
	}
	if len(s.covers) > 0 {
		var names []string
		for _, c := range s.covers {
			names = append(names, s.spotName(c.spot))
		}
		out += fmt.Sprintf("; held by unanswered bookings: %s", strings.Join(names, ", "))
	}
	return out
}
