// Command lincheck checks that a recorded history of ParkMe booking
// operations is linearizable: that every acknowledged answer is explained
// by one serial order of the operations, each taking effect at one instant
// between its call and its answer, on a facility whose spots are held one
// booking at a time. It uses porcupine for the search and model.go for the
// specification; README.md defines the input format and the rules.
//
//	lincheck --layout layout.json [--viz out.html] [--timeout 5m] history.jsonl
//
// Exit 0: linearizable (one summary line). Exit 1: not linearizable (a
// description of each failing facility; the visualization if asked).
// Exit 2: bad input or usage. Exit 3: the search timed out undecided.
//
// It must never report a history linearizable that it did not check whole:
// a line it cannot read stops it with exit 2.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

const (
	exitOK      = 0
	exitIllegal = 1
	exitBad     = 2
	exitTimeout = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	layout  string
	viz     string
	timeout time.Duration
	history string
}

// parseArgs accepts flags before or after the history path.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("lincheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.layout, "layout", "", "the facilities' layout `file` (see README.md; required)")
	fs.StringVar(&o.viz, "viz", "", "on failure, write porcupine's HTML visualization to this `file`")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up undecided (exit 3) after this long; 0 = no limit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lincheck --layout FILE [--viz FILE] [--timeout D] HISTORY.jsonl|-")
		fs.PrintDefaults()
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return nil, fmt.Errorf("expected one history file, got %d", len(positional))
	}
	if o.layout == "" {
		fs.Usage()
		return nil, fmt.Errorf("--layout is required")
	}
	o.history = positional[0]
	return o, nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintf(stderr, "lincheck: %v\n", err)
		}
		return exitBad
	}
	layoutData, err := os.ReadFile(o.layout)
	if err != nil {
		fmt.Fprintf(stderr, "lincheck: %v\n", err)
		return exitBad
	}
	layouts, err := readLayouts(layoutData)
	if err != nil {
		fmt.Fprintf(stderr, "lincheck: %v\n", err)
		return exitBad
	}
	var src io.Reader = stdin
	if o.history != "-" {
		f, err := os.Open(o.history)
		if err != nil {
			fmt.Fprintf(stderr, "lincheck: %v\n", err)
			return exitBad
		}
		defer f.Close()
		src = f
	}
	h, err := readHistory(src, layouts)
	if err != nil {
		fmt.Fprintf(stderr, "lincheck: %v\n", err)
		return exitBad
	}
	return check(h, o, stdout, stderr)
}

func check(h *history, o *options, stdout, stderr io.Writer) int {
	model := newModel()
	var illegal, undecided []string
	var failingOps []porcupine.Operation
	for _, facility := range h.order {
		ops := h.partitions[facility]
		if certain := certainViolations(ops); len(certain) > 0 {
			illegal = append(illegal, facility)
			fmt.Fprintf(stdout, "facility %s is not linearizable: double bookings that no order explains:\n", facility)
			for i, v := range certain {
				if i == 10 {
					fmt.Fprintf(stdout, "  ... (%d in all)\n", len(certain))
					break
				}
				fmt.Fprintf(stdout, "  %s\n", v)
			}
			failingOps = append(failingOps, ops...)
			continue
		}
		res, info := porcupine.CheckOperationsVerbose(model, ops, o.timeout)
		switch res {
		case porcupine.Ok:
		case porcupine.Illegal:
			illegal = append(illegal, facility)
			failingOps = append(failingOps, ops...)
			describeFailure(stdout, facility, ops, info)
		default:
			undecided = append(undecided, facility)
		}
	}
	summary := fmt.Sprintf("%d ops (%d unknown outcome) in %d partitions (facilities %s)",
		h.ops, h.unknowns, len(h.order), strings.Join(h.order, ", "))
	switch {
	case len(illegal) > 0:
		if o.viz != "" {
			res, info := porcupine.CheckOperationsVerbose(model, failingOps, o.timeout)
			if res == porcupine.Unknown {
				fmt.Fprintf(stderr, "lincheck: the search for the visualization timed out; it shows what was found by then\n")
			}
			if err := porcupine.VisualizePath(model, info, o.viz); err != nil {
				fmt.Fprintf(stderr, "lincheck: writing %s: %v\n", o.viz, err)
			} else {
				fmt.Fprintf(stdout, "visualization written to %s\n", o.viz)
			}
		}
		fmt.Fprintf(stdout, "lincheck: NOT linearizable: %s; failing: %s\n", summary, strings.Join(illegal, ", "))
		return exitIllegal
	case len(undecided) > 0:
		fmt.Fprintf(stdout, "lincheck: undecided (timed out after %s): %s; undecided: %s\n", o.timeout, summary, strings.Join(undecided, ", "))
		return exitTimeout
	}
	fmt.Fprintf(stdout, "lincheck: linearizable: %s\n", summary)
	return exitOK
}

// describeFailure replays the longest order porcupine could explain and
// says, for each operation that could come next, why the model refuses it.
func describeFailure(w io.Writer, facility string, ops []porcupine.Operation, info porcupine.LinearizationInfo) {
	unknowns := 0
	for _, op := range ops {
		if op.Output.(*output).outcome == unknown {
			unknowns++
		}
	}
	fmt.Fprintf(w, "facility %s is not linearizable (%d ops, %d unknown outcome)\n", facility, len(ops), unknowns)
	var longest []porcupine.Operation
	for _, partition := range info.PartialLinearizationsOperations() {
		for _, p := range partition {
			if len(p) > len(longest) {
				longest = p
			}
		}
	}
	var s *state
	done := make(map[*input]bool)
	for _, op := range longest {
		in := op.Input.(*input)
		next, _ := step(current(s, in), in, op.Output.(*output))
		s = next
		done[in] = true
	}
	fmt.Fprintf(w, "  longest explainable order: %d of %d ops; then %s\n", len(longest), len(ops), describeState(s, 12))
	var rest []porcupine.Operation
	first := int64(1<<63 - 1)
	for _, op := range ops {
		if !done[op.Input.(*input)] {
			rest = append(rest, op)
			if op.Return < first {
				first = op.Return
			}
		}
	}
	sort.SliceStable(rest, func(i, j int) bool { return rest[i].Call < rest[j].Call })
	fmt.Fprintln(w, "  none of these can come next:")
	shown := 0
	for _, op := range rest {
		if op.Call > first {
			break
		}
		in, out := op.Input.(*input), op.Output.(*output)
		_, why := step(current(s, in), in, out)
		if why == "" {
			why = "possible here, but what must follow is not"
		}
		if shown == 10 {
			fmt.Fprintln(w, "    ...")
			break
		}
		fmt.Fprintf(w, "    line %d, client %d: %s: %s\n", in.line, in.client, describeOp(in, out), why)
		shown++
	}
}
