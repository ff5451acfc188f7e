package drill

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// Plot layout.
const (
	plotW      = 900
	rowH       = 150
	marginL    = 60
	marginR    = 20
	marginTop  = 30
	rowGap     = 40
	maxPoints  = 3000
	minLatency = 0.5 // ms, bottom of the log axis
	maxLatency = 20000.0
)

// WriteSVG draws one row per scenario: every request as a dot at its start
// time and latency (log scale), green if it succeeded and red if it failed,
// with the fault, the heal and the return to whole marked. Hand-written
// SVG, no dependencies.
func WriteSVG(w io.Writer, rs []Result) error {
	var rows []Result
	for _, r := range rs {
		if r.Skipped == "" && len(r.Ops) > 0 {
			rows = append(rows, r)
		}
	}
	h := marginTop + len(rows)*(rowH+rowGap) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", plotW, h, plotW, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">haven drill: request latency over time (green ok, red failed)</text>`+"\n", marginL)
	for i, r := range rows {
		plotRow(&b, r, marginTop+i*(rowH+rowGap)+14)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func plotRow(b *strings.Builder, r Result, top int) {
	x0, x1 := float64(marginL), float64(plotW-marginR)
	y0, y1 := float64(top+rowH), float64(top) // bottom, top
	from, to := r.From, r.To
	if to <= from {
		to = from + time.Second
	}
	xOf := func(t time.Duration) float64 {
		return x0 + (x1-x0)*float64(t-from)/float64(to-from)
	}
	lo, hi := math.Log10(minLatency), math.Log10(maxLatency)
	yOf := func(d time.Duration) float64 {
		ms := math.Max(float64(d)/1e6, minLatency)
		v := math.Min((math.Log10(ms)-lo)/(hi-lo), 1)
		return y0 - (y0-y1)*v
	}
	fmt.Fprintf(b, `<text x="%g" y="%g" font-weight="bold">%s</text><text x="%g" y="%g" fill="#555"> RTO %s, %d errors, %d/%d acked writes lost, split brain %s</text>`+"\n",
		x0, y1-6, esc(r.Name), x0+150, y1-6, fmtDur(r.RTO), r.Errors, len(r.Lost), r.Acked, map[bool]string{true: "no", false: "YES"}[r.Split == ""])
	fmt.Fprintf(b, `<rect x="%g" y="%g" width="%g" height="%g" fill="#fafafa" stroke="#ccc"/>`+"\n", x0, y1, x1-x0, y0-y1)
	// Latency grid.
	for _, ms := range []float64{1, 10, 100, 1000, 10000} {
		y := yOf(time.Duration(ms * 1e6))
		fmt.Fprintf(b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e4e4e4"/><text x="%g" y="%.1f" text-anchor="end" fill="#777">%s</text>`+"\n",
			x0, y, x1, y, x0-4, y+4, latLabel(ms))
	}
	// Time ticks every second (or every 5 s for long rows).
	step := time.Second
	if to-from > 30*time.Second {
		step = 5 * time.Second
	}
	for t := from.Truncate(step) + step; t < to; t += step {
		x := xOf(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#bbb"/><text x="%.1f" y="%g" text-anchor="middle" fill="#777">%.0fs</text>`+"\n",
			x, y0, x, y0+4, x, y0+15, t.Seconds())
	}
	// Requests, thinned evenly if there are too many.
	ops := r.Ops
	every := 1
	if len(ops) > maxPoints {
		every = (len(ops) + maxPoints - 1) / maxPoints
	}
	var ok, bad strings.Builder
	for i, o := range ops {
		if o.Start < from || o.Start > to {
			continue
		}
		if o.OK && i%every != 0 {
			continue // failures are always drawn
		}
		x, y := xOf(o.Start), yOf(o.Latency())
		if o.OK {
			fmt.Fprintf(&ok, "M%.1f %.1fh0", x, y)
		} else {
			fmt.Fprintf(&bad, "M%.1f %.1fl4 4M%.1f %.1fl4 -4", x-2, y-2, x-2, y+2)
		}
	}
	if ok.Len() > 0 {
		fmt.Fprintf(b, `<path d="%s" stroke="#2a9d3a" stroke-width="3" stroke-linecap="round"/>`+"\n", ok.String())
	}
	if bad.Len() > 0 {
		fmt.Fprintf(b, `<path d="%s" stroke="#d62828" stroke-width="1.5"/>`+"\n", bad.String())
	}
	// Marks.
	for _, m := range r.Marks {
		if m.At < from || m.At > to {
			continue
		}
		color, label := "#888", ""
		switch {
		case m.What == "fault":
			color, label = "#d62828", "fault"
		case strings.HasPrefix(m.What, "heal"):
			color, label = "#1d4ed8", "heal"
		case m.What == "whole":
			color, label = "#555", "whole"
		}
		x := xOf(m.At)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="%s" stroke-dasharray="4 3"><title>%s %s</title></line>`+"\n",
			x, y1, x, y0, color, fmtT(m.At), esc(m.What))
		if label != "" {
			fmt.Fprintf(b, `<text x="%.1f" y="%g" fill="%s" font-size="10">%s</text>`+"\n", x+2, y1+10, color, label)
		}
	}
}

func latLabel(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%gs", ms/1000)
	}
	return fmt.Sprintf("%gms", ms)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
