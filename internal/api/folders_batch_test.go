package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// batchReceiver is a stubReceiver that takes batches, keeping what came.
type batchReceiver struct {
	stubReceiver
	got [][]byte
}

func (b *batchReceiver) FolderPutMany(_ context.Context, _ string, bt FolderBatch, data [][]byte) ([]FolderFileResult, error) {
	out := make([]FolderFileResult, len(bt.Files))
	for i, p := range bt.Files {
		b.got = append(b.got, bytes.Clone(data[i]))
		out[i] = FolderFileResult{File: p.File}
	}
	return out, nil
}

// TestFoldersBatch: a batch of files reaches the receiver as sent, and a
// malformed one (a head that does not fit the body, files that do not add
// up, too many files, no CRC-32C on a link without TLS) is refused
// before the receiver sees it. A receiver that takes no batch says so in
// its manifest, and one that does says it too.
func TestFoldersBatch(t *testing.T) {
	const token = "0123456789abcdef"
	recv := &batchReceiver{}
	srv := httptest.NewServer(FoldersHandler(recv, []string{"n1"}, Options{Token: token}))
	defer srv.Close()
	c := NewClient(ClientOptions{Token: token})
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	if m, err := c.FolderManifest(ctx, addr, "rec"); err != nil || !m.Batch {
		t.Errorf("manifest of a receiver that takes batches: Batch %v, %v", m.Batch, err)
	}
	b := FolderBatch{From: "n1", Epoch: 1, Files: []FolderPart{
		{File: FileEntry{Path: "a", Size: 3}, Sum: "00000000"},
		{File: FileEntry{Path: "b", Size: 0}, Sum: "00000000"},
		{File: FileEntry{Path: "c", Size: 2}, Sum: "00000000"},
	}}
	res, err := c.FolderPutMany(ctx, addr, "rec", b, [][]byte{[]byte("aaa"), {}, []byte("cc")})
	if err != nil || len(res) != 3 || res[2].File.Path != "c" || res[0].Err() != nil {
		t.Fatalf("a good batch: %+v, %v", res, err)
	}
	if len(recv.got) != 3 || string(recv.got[0]) != "aaa" || len(recv.got[1]) != 0 || string(recv.got[2]) != "cc" {
		t.Fatalf("the receiver got %q", recv.got)
	}
	put := func(head string, n int, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/folders/rec/files?head="+strconv.Itoa(n), strings.NewReader(head+body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	head := func(b FolderBatch) string { j, _ := json.Marshal(b); return string(j) }
	good := head(FolderBatch{From: "n1", Epoch: 1, Files: []FolderPart{{File: FileEntry{Path: "a", Size: 3}, Sum: "00000000"}}})
	many := FolderBatch{From: "n1", Epoch: 1}
	for range MaxFolderBatch + 1 {
		many.Files = append(many.Files, FolderPart{File: FileEntry{Path: "a"}, Sum: "00000000"})
	}
	before := len(recv.got)
	for _, tc := range []struct {
		name, head string
		n          int
		body       string
	}{
		{"no head length", good, 0, "aaa"},
		{"a head longer than the body", good, len(good) + 10, "aaa"},
		{"a head cut short", good, len(good) - 1, "aaa"},
		{"fewer bytes than the files", good, len(good), "aa"},
		{"more bytes than the files", good, len(good), "aaaa"},
		{"no files", head(FolderBatch{From: "n1", Epoch: 1}), len(head(FolderBatch{From: "n1", Epoch: 1})), ""},
		{"too many files", head(many), len(head(many)), ""},
		{"no CRC-32C without TLS", head(FolderBatch{From: "n1", Epoch: 1, Files: []FolderPart{{File: FileEntry{Path: "a", Size: 3}}}}), len(head(FolderBatch{From: "n1", Epoch: 1, Files: []FolderPart{{File: FileEntry{Path: "a", Size: 3}}}})), "aaa"},
		{"a negative size", head(FolderBatch{From: "n1", Epoch: 1, Files: []FolderPart{{File: FileEntry{Path: "a", Size: -1}, Sum: "00000000"}}}), len(head(FolderBatch{From: "n1", Epoch: 1, Files: []FolderPart{{File: FileEntry{Path: "a", Size: -1}, Sum: "00000000"}}})), ""},
	} {
		if code := put(tc.head, tc.n, tc.body); code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", tc.name, code)
		}
	}
	if len(recv.got) != before {
		t.Errorf("malformed batches reached the receiver: %d files", len(recv.got)-before)
	}
	if code := put(good, len(good), "aaa"); code != http.StatusOK {
		t.Errorf("the good batch by hand: HTTP %d", code)
	}
	// A receiver without batches: its manifest does not offer them, and
	// a batch sent anyway is refused (NotFound), not misread.
	old := httptest.NewServer(FoldersHandler(&stubReceiver{}, []string{"n1"}, Options{Token: token}))
	defer old.Close()
	oaddr := strings.TrimPrefix(old.URL, "http://")
	if m, err := c.FolderManifest(ctx, oaddr, "rec"); err != nil || m.Batch {
		t.Errorf("manifest of a receiver without batches: Batch %v, %v", m.Batch, err)
	}
	if _, err := c.FolderPutMany(ctx, oaddr, "rec", b, [][]byte{[]byte("aaa"), {}, []byte("cc")}); err == nil || !strings.Contains(err.Error(), "one by one") {
		t.Errorf("a batch to a receiver without batches: %v", err)
	}
}
