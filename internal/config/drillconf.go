package config

// Drill says whether `haven drill --config FILE` may inject faults into
// this cluster (`drill:`). Off unless the file says so: a drill kills
// processes and moves the active role on a real cluster.
type Drill struct {
	Enabled bool
	Line    int // where the section is, for messages; 0 when absent
}

var drillKeys = []string{"enabled"}

func (b *builder) drill(f fields) {
	n, ok := f["drill"]
	if !ok {
		return
	}
	b.c.Drill.Line = n.Line
	df := b.mapping(n, "drill", drillKeys)
	if df == nil {
		return
	}
	if v, ok := df["enabled"]; ok {
		b.c.Drill.Enabled, _ = b.boolean(v, "drill.enabled")
	}
}
