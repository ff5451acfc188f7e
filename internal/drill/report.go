package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a whole drill run.
type Report struct {
	Time      time.Time `json:"time"`
	Command   string    `json:"command"`
	Machine   string    `json:"machine"`
	Sandbox   string    `json:"sandbox"` // how the cluster was built
	Timing    string    `json:"timing"`
	Clients   int       `json:"clients"`
	Results   []Result  `json:"results"`
	Duration  float64   `json:"duration_s"`
	Linearize string    `json:"linearizable,omitempty"`
}

// Machine describes this machine in a line.
func Machine() string {
	return fmt.Sprintf("%d cores, %s/%s, %s, load average %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), loadAvg())
}

// errCell is the "errors seen by clients" cell.
func errCell(r Result) string {
	if r.Errors == 0 {
		return fmt.Sprintf("0 of %d", r.Requests)
	}
	byName := map[string]int{}
	for k, n := range r.ByKind {
		byName[kindName(k)] += n
	}
	var kinds []string
	for k, n := range byName {
		kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d of %d (%s)", r.Errors, r.Requests, strings.Join(kinds, ", "))
}

func kindName(k string) string {
	switch k {
	case OpGet:
		return "GET /"
	case OpWrite, OpRegW:
		return "writes"
	case OpRegR:
		return "reads"
	}
	return k
}

func lostCell(r Result) string {
	if r.Skipped != "" {
		return "—"
	}
	cell := fmt.Sprintf("%d of %d", len(r.Lost), r.Acked)
	if r.Sessions != nil {
		cell += fmt.Sprintf("; sessions %d of %d", len(r.Sessions.Lost), r.Sessions.Written)
	}
	if r.Folders != nil {
		cell += fmt.Sprintf("; files %d of %d", len(r.Folders.Lost), r.Folders.Written)
	}
	return cell
}

func splitCell(r Result) string {
	if r.Skipped != "" {
		return "—"
	}
	if r.Split == "" {
		return "no"
	}
	return "YES: " + r.Split
}

func rtoCell(r Result) string {
	if r.Skipped != "" {
		return "—"
	}
	var parts []string
	if sp := r.split(); sp != "" {
		parts = append(parts, sp)
	}
	if r.EtcdLeader != "" {
		parts = append(parts, "etcd leader: "+r.EtcdLeader)
	}
	if len(parts) > 0 {
		return fmtDur(r.RTO) + " (" + strings.Join(parts, "; ") + ")"
	}
	return fmtDur(r.RTO)
}

func whatCell(r Result) string {
	s := r.What
	if r.Skipped != "" {
		s = "skipped: " + r.Skipped
	}
	if r.Failed != "" {
		s = strings.TrimPrefix(s+"; ", "; ") + "DRILL FAILED: " + r.Failed
	}
	return s
}

// WriteTable prints the results as a text table.
func WriteTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tRTO\tERRORS SEEN BY CLIENTS\tACKED WRITES LOST\tSPLIT BRAIN\tTARGET\tWHAT HAPPENED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, rtoCell(r), errCell(r), lostCell(r), splitCell(r), r.Verdict, whatCell(r))
	}
	tw.Flush()
}

// WriteJSON writes the report as JSON.
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// WriteMarkdown writes the report as Markdown; plot, when not empty, is
// the name of the SVG to show under the table.
func WriteMarkdown(w io.Writer, rep Report, plot string) {
	fmt.Fprintf(w, "# haven drill, %s\n\n", rep.Time.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Command: `%s`  \nMachine: %s  \nCluster: %s, timing `%s`; %d clients through the proxy  \nDuration: %.0f s\n\n",
		rep.Command, rep.Machine, rep.Sandbox, rep.Timing, rep.Clients, rep.Duration)
	fmt.Fprintln(w, "| scenario | what happened | RTO | errors seen by clients | acked writes lost (RPO) | split brain | haven target | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range rep.Results {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Name, mdEscape(whatCell(r)), rtoCell(r), mdEscape(errCell(r)),
			lostCell(r), mdEscape(splitCell(r)), mdEscape(r.Target), r.Verdict)
	}
	if rep.Linearize != "" {
		fmt.Fprintf(w, "\nShared registers (porcupine, key-value model): %s\n", rep.Linearize)
	}
	fmt.Fprintln(w, `
RTO is the longest stretch after the fault in which no client request
succeeded (for a crash, the fault to the first success, unless a longer gap
followed; then the cell says when the new active answered, when clients were
first served again, and when the longest gap began). Errors are requests
that got no 200 between the fault and the cluster being whole again. Acked
writes lost: every write answered 200 is read back at the end of its
scenario. Split brain: an answer at an older epoch served after one at a
newer epoch (by the nodes' clock, one machine), two nodes at one epoch, or an
epoch going backwards as clients saw it.`)
	if plot != "" {
		fmt.Fprintf(w, "\n![requests over time, per scenario](%s)\n\nEach dot is a request: green succeeded, red failed; height is latency (log scale). Red lines mark the fault, blue the heal, grey the cluster whole again.\n", plot)
	}
	for _, r := range rep.Results {
		if len(r.Marks) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n**%s** — %s. Timeline:", r.Name, r.Title)
		for _, m := range r.Marks {
			fmt.Fprintf(w, " %s %s;", fmtT(m.At), mdEscape(m.What))
		}
		fmt.Fprintf(w, " epochs answered: %s.\n", strings.Join(r.Epochs, ", "))
	}
}
