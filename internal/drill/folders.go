package drill

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FolderCheck is what a scenario did to the replicated folder (a sandbox
// with Folders): files written into the active's folder before the fault
// and shipped to every standby (the active reported none lacking them),
// and those missing or different on the active once the cluster is whole.
type FolderCheck struct {
	Written int      `json:"written"`
	Lost    []string `json:"lost,omitempty"`
	Err     string   `json:"error,omitempty"` // the check could not be made
}

// folderCount is how many files each scenario writes before its fault.
const folderCount = 20

// writeFiles writes files of 1 KiB to 256 KiB under prefix into the
// active's folder, and waits until every standby has them (at most
// max_lag + 10 s).
func (s *Sandbox) writeFiles(ctx context.Context, prefix string) (*FolderCheck, map[string][]byte) {
	chk := &FolderCheck{}
	active, _ := s.Active()
	if active == "" {
		chk.Err = "no active node to write files on"
		return chk, nil
	}
	files := map[string][]byte{}
	for i := range folderCount {
		name := filepath.Join(prefix, fmt.Sprintf("f%02d.bin", i))
		data := bytes.Repeat([]byte{byte(i)}, 1<<(10+i%9))
		p := filepath.Join(s.Node(active).Files, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			chk.Err = err.Error()
			return chk, nil
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			chk.Err = err.Error()
			return chk, nil
		}
		files[name] = data
	}
	chk.Written = len(files)
	// Acknowledged: on every standby's disk (the sandbox sees every
	// node's folder; the active's published status may be seconds old).
	deadline := time.Now().Add(SandboxMaxLag + 10*time.Second)
	for {
		missing := 0
		for _, n := range s.Nodes {
			if n.Name == active {
				continue
			}
			for name, want := range files {
				if got, err := os.ReadFile(filepath.Join(n.Files, name)); err != nil || !bytes.Equal(got, want) {
					missing++
				}
			}
		}
		if missing == 0 {
			return chk, files
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 50*time.Millisecond) != nil {
			chk.Err = fmt.Sprintf("%d copies of the files were not on the standbys within %s", missing, SandboxMaxLag+10*time.Second)
			return chk, files
		}
	}
}

// readFiles compares files with the copy of the node that is active now.
func (s *Sandbox) readFiles(ctx context.Context, chk *FolderCheck, files map[string][]byte) {
	var active string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if active, _ = s.Active(); active != "" || time.Now().After(deadline) || sleepCtx(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	if active == "" {
		chk.Err = "no active node to read the files from"
		return
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(s.Node(active).Files, name))
		if err != nil || !bytes.Equal(got, want) {
			chk.Lost = append(chk.Lost, name)
		}
	}
}
