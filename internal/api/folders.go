package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// FileEntry is one file of a replicated folder as a manifest lists it.
type FileEntry struct {
	Path   string `json:"path"`             // relative, slash-separated
	Size   int64  `json:"size"`             // bytes
	MTime  int64  `json:"mtime_ns"`         // modification time, Unix nanoseconds
	Mode   uint32 `json:"mode,omitempty"`   // permission bits
	SHA256 string `json:"sha256,omitempty"` // hex; empty when not computed
	Note   string `json:"note,omitempty"`   // why a file is listed (lost: "missing", "older")
}

// FolderManifest answers GET /v1/folders/{folder}/manifest: what a
// receiving node has.
type FolderManifest struct {
	Folder  string      `json:"folder"`
	Node    string      `json:"node"`
	Entries []FileEntry `json:"entries"`
	// ChunkSumOptional: the receiver takes chunks without a CRC-32C
	// (ChunkSumHeader) on this link, because it is TLS: every TLS record
	// is authenticated (AEAD), so a chunk corrupted on the way never
	// arrives. Set by the handler; a receiver of an older version leaves
	// it out, and a sender then sends the CRC-32C as before.
	ChunkSumOptional bool `json:"chunk_sum_optional,omitempty"`
	// Batch: the receiver takes many small files in one request (PUT
	// files, FolderBatcher). A receiver of an older version leaves it out,
	// and a sender then sends them one request each (PUT file).
	Batch bool `json:"batch,omitempty"`
}

// FolderBatch is the head of PUT /v1/folders/{folder}/files: who sends
// the files at which epoch, and each file (its SHA-256 and mode in File)
// with its CRC-32C (Sum; "" over TLS, as ChunkSumHeader). The files'
// bytes follow the head in the body, in this order.
type FolderBatch struct {
	From  string       `json:"from"`
	Epoch ha.Epoch     `json:"epoch"`
	Files []FolderPart `json:"files"`
}

// FolderPart is one file of a FolderBatch.
type FolderPart struct {
	File FileEntry `json:"file"`
	Sum  string    `json:"crc32c,omitempty"`
}

// FolderFileResult is what became of one file of a batch: committed (Status
// 0, File as committed, with its SHA-256) or refused (Status: the HTTP
// status of its error, as StatusOf; Error: the message).
type FolderFileResult struct {
	File   FileEntry `json:"file"`
	Status int       `json:"status,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// Err is the result's error (nil: committed), with its kind.
func (r FolderFileResult) Err() error {
	if r.Status == 0 {
		return nil
	}
	return ha.Errorf(KindOfStatus(r.Status), "%s", r.Error)
}

// MaxFolderBatch is the most files a batch may hold.
const MaxFolderBatch = 1024

// FolderWrite is one write of the active to a receiving node's folder
// (begin, commit or delete of File). The receiver takes it only from the
// node it sees holding the active role at Epoch.
type FolderWrite struct {
	From  string    `json:"from"`
	Epoch ha.Epoch  `json:"epoch"`
	File  FileEntry `json:"file"`
}

// FolderOffset is how many bytes of an upload the receiver holds.
type FolderOffset struct {
	Offset int64 `json:"offset"`
}

// FolderSource is the active's own list of files that are complete (quiet),
// sent to every receiver so that a node promoted later can tell which of
// them it lacks (the RPO of the folder).
type FolderSource struct {
	From    string      `json:"from"`
	Epoch   ha.Epoch    `json:"epoch"`
	Entries []FileEntry `json:"entries"`
}

// FolderReceiver is a node that takes writes of replicated folders from
// the active. Errors carry ha kinds (Conflict: not from the active;
// Invalid: a bad path or a corrupt chunk; Unavailable: full disk).
type FolderReceiver interface {
	FolderManifest(ctx context.Context, folder string) (FolderManifest, error)
	FolderBegin(ctx context.Context, folder string, w FolderWrite) (FolderOffset, error)
	FolderChunk(ctx context.Context, folder string, w FolderWrite, offset int64, crc32c string, data []byte) (FolderOffset, error)
	FolderCommit(ctx context.Context, folder string, w FolderWrite) (FileEntry, error)
	// FolderPut is begin, one chunk and commit in one call, for a file
	// that fits in a chunk.
	FolderPut(ctx context.Context, folder string, w FolderWrite, crc32c string, data []byte) (FileEntry, error)
	FolderDelete(ctx context.Context, folder string, w FolderWrite) error
	FolderSource(ctx context.Context, folder string, s FolderSource) error
}

// FolderBatcher may be implemented by a FolderReceiver to take many
// small files in one request (each as FolderPut would); its manifest then
// says Batch. The answer has one result per file, in order; an error of
// the whole call (not from the active) refuses them all. data must not be
// kept after it returns.
type FolderBatcher interface {
	FolderPutMany(ctx context.Context, folder string, b FolderBatch, data [][]byte) ([]FolderFileResult, error)
}

// FolderBuffers may be implemented by a FolderReceiver to lend the buffers
// that chunk bodies are read into, so that a chunk of megabytes costs no
// allocation (and no garbage). FolderChunk and FolderPut must not keep
// data after they return: it goes back with FolderBufferDone.
type FolderBuffers interface {
	FolderBuffer(n int) []byte
	FolderBufferDone(b []byte)
}

// ChunkSumHeader carries the CRC-32C (Castagnoli) of a chunk's body, 8 hex
// digits: a corrupt chunk is refused and sent again. The whole file is
// checked against its SHA-256 at the commit. Over TLS the header may be
// left out (see FolderManifest.ChunkSumOptional); when it is sent, it is
// checked, so a sender of an older version is still understood.
const ChunkSumHeader = "X-Haven-Chunk-Crc32c"

// MaxFolderChunk is the largest chunk a receiver takes.
const MaxFolderChunk = 16 << 20

// minFolderRate is the slowest a chunk's body may arrive, in bytes a
// second: the agent's server reads a whole request within a few seconds
// (ReadTimeout), which an 8 MiB chunk over a WAN link or beside three
// other uploads does not meet; the folder routes give the body this
// much longer, and their answer (a commit's fsync) foldersWriteGrace.
const minFolderRate = 64 << 10

const foldersWriteGrace = 2 * time.Minute

// maxFolderJSON bounds a JSON body of the folder routes (a source manifest
// of 100,000 files is about 15 MB).
const maxFolderJSON = 64 << 20

// FoldersHandler serves /v1/folders/: the receiving side of replicated
// folders. Only the cluster's agents may call it: a client certificate of
// the cluster's CA whose name is one of nodes, or the API token.
func FoldersHandler(recv FolderReceiver, nodes []string, o Options) http.Handler {
	mux := http.NewServeMux()
	// from checks a write's sender against the node certificate it came
	// with: a standby's certificate must not write in the active's name
	// (with the token, which every agent holds, there is no name to check).
	from := func(r *http.Request, name string) error {
		if peer, _ := r.Context().Value(folderPeerKey{}).(string); peer != "" && peer != name {
			return ha.Errorf(ha.KindForbidden, "write from %q with the certificate of %q; an agent writes only in its own name", name, peer)
		}
		return nil
	}
	guard := func(h func(w http.ResponseWriter, r *http.Request, folder string) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			peer, err := peerAuthorized(r, nodes, o.Token)
			if err != nil {
				WriteError(w, StatusOf(err), err.Error())
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), folderPeerKey{}, peer))
			rc := http.NewResponseController(w)
			now := time.Now()
			if r.ContentLength > 0 {
				_ = rc.SetReadDeadline(now.Add(10*time.Second + time.Duration(r.ContentLength/minFolderRate)*time.Second))
			}
			_ = rc.SetWriteDeadline(now.Add(foldersWriteGrace + time.Duration(max(r.ContentLength, 0)/minFolderRate)*time.Second))
			res, err := h(w, r, r.PathValue("folder"))
			if err != nil {
				WriteError(w, StatusOf(err), err.Error())
				return
			}
			writeJSON(w, http.StatusOK, res)
		}
	}
	readJSON := func(w http.ResponseWriter, r *http.Request, v any) error {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFolderJSON))
		if err != nil {
			return ha.Errorf(ha.KindInvalid, "request body: %v (at most %d bytes)", err, maxFolderJSON)
		}
		return decode(body, v)
	}
	mux.HandleFunc("GET /v1/folders/{folder}/manifest", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		m, err := recv.FolderManifest(r.Context(), folder)
		m.ChunkSumOptional = r.TLS != nil
		_, m.Batch = recv.(FolderBatcher)
		return m, err
	}))
	mux.HandleFunc("POST /v1/folders/{folder}/begin", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		var fw FolderWrite
		if err := readJSON(w, r, &fw); err != nil {
			return nil, err
		}
		if err := from(r, fw.From); err != nil {
			return nil, err
		}
		return recv.FolderBegin(r.Context(), folder, fw)
	}))
	mux.HandleFunc("PUT /v1/folders/{folder}/file", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		fw, _, sum, data, err := readChunk(r, recv)
		if err != nil {
			return nil, err
		}
		defer doneChunk(recv, data)
		if err := from(r, fw.From); err != nil {
			return nil, err
		}
		fw.File.SHA256 = r.URL.Query().Get("sha256")
		if m, err := strconv.ParseUint(r.URL.Query().Get("mode"), 10, 32); err == nil {
			fw.File.Mode = uint32(m)
		}
		return recv.FolderPut(r.Context(), folder, fw, sum, data)
	}))
	mux.HandleFunc("PUT /v1/folders/{folder}/files", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		bt, ok := recv.(FolderBatcher)
		if !ok {
			return nil, ha.Errorf(ha.KindNotFound, "this node takes no batch of files; send them one by one (PUT file)")
		}
		b, data, buf, err := readBatch(r, recv)
		if err != nil {
			return nil, err
		}
		defer doneChunk(recv, buf)
		if err := from(r, b.From); err != nil {
			return nil, err
		}
		return bt.FolderPutMany(r.Context(), folder, b, data)
	}))
	mux.HandleFunc("PUT /v1/folders/{folder}/chunk", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		fw, offset, sum, data, err := readChunk(r, recv)
		if err != nil {
			return nil, err
		}
		defer doneChunk(recv, data)
		if err := from(r, fw.From); err != nil {
			return nil, err
		}
		return recv.FolderChunk(r.Context(), folder, fw, offset, sum, data)
	}))
	mux.HandleFunc("POST /v1/folders/{folder}/commit", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		var fw FolderWrite
		if err := readJSON(w, r, &fw); err != nil {
			return nil, err
		}
		if err := from(r, fw.From); err != nil {
			return nil, err
		}
		return recv.FolderCommit(r.Context(), folder, fw)
	}))
	mux.HandleFunc("POST /v1/folders/{folder}/delete", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		var fw FolderWrite
		if err := readJSON(w, r, &fw); err != nil {
			return nil, err
		}
		if err := from(r, fw.From); err != nil {
			return nil, err
		}
		return struct{}{}, recv.FolderDelete(r.Context(), folder, fw)
	}))
	mux.HandleFunc("POST /v1/folders/{folder}/source", guard(func(w http.ResponseWriter, r *http.Request, folder string) (any, error) {
		var s FolderSource
		if err := readJSON(w, r, &s); err != nil {
			return nil, err
		}
		if err := from(r, s.From); err != nil {
			return nil, err
		}
		return struct{}{}, recv.FolderSource(r.Context(), folder, s)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no such folder endpoint "+r.Method+" "+r.URL.Path+"; the agents use GET manifest, POST begin, commit, delete, source and PUT chunk, file, files under /v1/folders/{folder}/")
	})
	return mux
}

// readChunk parses a chunk or small file upload: the write's fields from
// the query, the body (Content-Length bytes) and its CRC-32C header
// (sum "" when a request over TLS left it out: see ChunkSumOptional).
// The body goes into a buffer of recv's when it lends them (FolderBuffers).
func readChunk(r *http.Request, recv FolderReceiver) (fw FolderWrite, offset int64, sum string, data []byte, err error) {
	q := r.URL.Query()
	var bad []string
	num := func(key string) int64 {
		if !q.Has(key) {
			return 0
		}
		n, err := strconv.ParseInt(q.Get(key), 10, 64)
		if err != nil || n < 0 {
			bad = append(bad, key)
		}
		return n
	}
	fw.From = q.Get("from")
	fw.Epoch = ha.Epoch(num("epoch"))
	fw.File = FileEntry{Path: q.Get("path"), Size: num("size"), MTime: num("mtime")}
	offset = num("offset")
	if len(bad) > 0 {
		return fw, 0, "", nil, ha.Errorf(ha.KindInvalid, "chunk: %s must be whole numbers >= 0", strings.Join(bad, ", "))
	}
	sum = r.Header.Get(ChunkSumHeader)
	switch {
	case sum == "" && r.TLS == nil:
		return fw, 0, "", nil, ha.Errorf(ha.KindInvalid, "chunk: header %s must hold the body's CRC-32C in 8 hex digits (it may be left out only over TLS)", ChunkSumHeader)
	case sum != "" && len(sum) != 8:
		return fw, 0, "", nil, ha.Errorf(ha.KindInvalid, "chunk: header %s must hold the body's CRC-32C in 8 hex digits", ChunkSumHeader)
	}
	if r.ContentLength < 0 || r.ContentLength > MaxFolderChunk {
		return fw, 0, "", nil, ha.Errorf(ha.KindInvalid, "chunk body: Content-Length %d; send 0 to %d bytes with a Content-Length", r.ContentLength, MaxFolderChunk)
	}
	if b, ok := recv.(FolderBuffers); ok {
		data = b.FolderBuffer(int(r.ContentLength))[:r.ContentLength]
	} else {
		data = make([]byte, r.ContentLength)
	}
	if _, err := io.ReadFull(r.Body, data); err != nil {
		doneChunk(recv, data)
		return fw, 0, "", nil, ha.Errorf(ha.KindInvalid, "chunk body: %v (Content-Length %d)", err, r.ContentLength)
	}
	return fw, offset, sum, data, nil
}

// readBatch parses a batch of files (PUT files): the head (FolderBatch,
// query "head" bytes of JSON) and the files' bytes after it, which must
// add up to the Content-Length. data holds a slice of buf per file; buf
// goes back with doneChunk.
func readBatch(r *http.Request, recv FolderReceiver) (b FolderBatch, data [][]byte, buf []byte, err error) {
	n, perr := strconv.ParseInt(r.URL.Query().Get("head"), 10, 64)
	if perr != nil || n <= 0 || n > maxFolderJSON {
		return b, nil, nil, ha.Errorf(ha.KindInvalid, "files: query head must be the length of the JSON head, 1 to %d bytes", maxFolderJSON)
	}
	if r.ContentLength < n || r.ContentLength > MaxFolderChunk {
		return b, nil, nil, ha.Errorf(ha.KindInvalid, "files body: Content-Length %d; send the head and the files, %d to %d bytes with a Content-Length", r.ContentLength, n, MaxFolderChunk)
	}
	if bf, ok := recv.(FolderBuffers); ok {
		buf = bf.FolderBuffer(int(r.ContentLength))[:r.ContentLength]
	} else {
		buf = make([]byte, r.ContentLength)
	}
	fail := func(err error) (FolderBatch, [][]byte, []byte, error) {
		doneChunk(recv, buf)
		return FolderBatch{}, nil, nil, err
	}
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return fail(ha.Errorf(ha.KindInvalid, "files body: %v (Content-Length %d)", err, r.ContentLength))
	}
	if err := decode(buf[:n], &b); err != nil {
		return fail(err)
	}
	if len(b.Files) == 0 || len(b.Files) > MaxFolderBatch {
		return fail(ha.Errorf(ha.KindInvalid, "files: %d files in a batch; send 1 to %d", len(b.Files), MaxFolderBatch))
	}
	rest := buf[n:]
	for i, p := range b.Files {
		switch {
		case p.Sum == "" && r.TLS == nil:
			return fail(ha.Errorf(ha.KindInvalid, "files: file %d (%s) has no crc32c; it may be left out only over TLS", i, p.File.Path))
		case p.Sum != "" && len(p.Sum) != 8:
			return fail(ha.Errorf(ha.KindInvalid, "files: file %d (%s): crc32c must be 8 hex digits", i, p.File.Path))
		case p.File.Size < 0 || p.File.Size > int64(len(rest)):
			return fail(ha.Errorf(ha.KindInvalid, "files: file %d (%s) of %d bytes, but %d bytes are left in the body", i, p.File.Path, p.File.Size, len(rest)))
		}
		data = append(data, rest[:p.File.Size:p.File.Size])
		rest = rest[p.File.Size:]
	}
	if len(rest) != 0 {
		return fail(ha.Errorf(ha.KindInvalid, "files: %d bytes after the last file", len(rest)))
	}
	return b, data, buf, nil
}

// doneChunk gives a chunk's buffer back to recv, if it lent it.
func doneChunk(recv FolderReceiver, data []byte) {
	if b, ok := recv.(FolderBuffers); ok {
		b.FolderBufferDone(data)
	}
}

// folderPeerKey keys the node name of a folder request's verified client
// certificate in its context.
type folderPeerKey struct{}

// peerAuthorized admits another agent of the cluster: a verified client
// certificate (the listener verifies any certificate presented against the
// cluster's CA) named after one of nodes, whose name it returns, or, only
// on a listener without TLS (insecure: true), the API token ("").
func peerAuthorized(r *http.Request, nodes []string, token string) (string, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		cn := r.TLS.PeerCertificates[0].Subject.CommonName
		if slices.Contains(nodes, cn) {
			return cn, nil
		}
		return "", ha.Errorf(ha.KindForbidden, "certificate %q is not a node of this cluster; only agents replicate folders", cn)
	}
	if r.TLS != nil {
		// With tls: every agent has a node certificate: the token, which
		// operators and scripts hold too, is not enough to write a folder.
		return "", ha.Errorf(ha.KindUnauthorized, "replicated folders take writes from the cluster's agents only: with tls: configured, a client certificate of the cluster's CA in a node's name is needed (api.token is not accepted here)")
	}
	if token == "" {
		return "", ha.Errorf(ha.KindUnauthorized, "replicated folders take writes from the cluster's agents only: a node certificate (tls:) or api.token is needed")
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(token)) != 1 {
		return "", ha.Errorf(ha.KindUnauthorized, "missing or wrong bearer token; replicated folders take writes from the cluster's agents only")
	}
	return "", nil
}

func folderPath(folder, op string) string {
	return "/v1/folders/" + url.PathEscape(folder) + "/" + op
}

// FolderManifest is GET /v1/folders/{folder}/manifest.
func (c *Client) FolderManifest(ctx context.Context, addr, folder string) (FolderManifest, error) {
	var m FolderManifest
	err := c.callJSON(ctx, http.MethodGet, addr, folderPath(folder, "manifest"), "", nil, &m)
	return m, err
}

// FolderBegin is POST /v1/folders/{folder}/begin: it returns how much of
// the upload of w.File the receiver already holds.
func (c *Client) FolderBegin(ctx context.Context, addr, folder string, w FolderWrite) (FolderOffset, error) {
	var o FolderOffset
	err := c.callJSON(ctx, http.MethodPost, addr, folderPath(folder, "begin"), "", w, &o)
	return o, err
}

// FolderChunk is PUT /v1/folders/{folder}/chunk: data at offset of the
// upload of w.File, with its CRC-32C (sum "": none, over TLS to a
// receiver whose manifest says ChunkSumOptional).
func (c *Client) FolderChunk(ctx context.Context, addr, folder string, w FolderWrite, offset int64, sum string, data []byte) (FolderOffset, error) {
	q := writeQuery(w)
	q.Set("offset", strconv.FormatInt(offset, 10))
	var o FolderOffset
	err := c.putBytes(ctx, addr, folderPath(folder, "chunk"), q, sum, data, &o, "a chunk")
	return o, err
}

// FolderPut is PUT /v1/folders/{folder}/file: a whole file that fits in
// one chunk, with its CRC-32C (or none, as FolderChunk) and (in w.File)
// its SHA-256 and mode.
func (c *Client) FolderPut(ctx context.Context, addr, folder string, w FolderWrite, sum string, data []byte) (FileEntry, error) {
	q := writeQuery(w)
	q.Set("mode", strconv.FormatUint(uint64(w.File.Mode), 10))
	q.Set("sha256", w.File.SHA256)
	var e FileEntry
	err := c.putBytes(ctx, addr, folderPath(folder, "file"), q, sum, data, &e, "a file")
	return e, err
}

// FolderPutMany is PUT /v1/folders/{folder}/files: many small files in one
// request (to a receiver whose manifest says Batch), data[i] the bytes of
// b.Files[i]; one result per file, in order.
func (c *Client) FolderPutMany(ctx context.Context, addr, folder string, b FolderBatch, data [][]byte) ([]FolderFileResult, error) {
	if len(data) != len(b.Files) {
		return nil, ha.Errorf(ha.KindInternal, "a batch of %d files with %d bodies", len(b.Files), len(data))
	}
	head, err := json.Marshal(b)
	if err != nil {
		return nil, ha.Wrap(ha.KindInternal, err, "encode a batch of files")
	}
	size := len(head)
	for _, d := range data {
		size += len(d)
	}
	body := make([]byte, 0, size)
	body = append(body, head...)
	for _, d := range data {
		body = append(body, d...)
	}
	q := url.Values{}
	q.Set("head", strconv.Itoa(len(head)))
	ans, err := c.send(ctx, http.MethodPut, addr, folderPath(folder, "files")+"?"+q.Encode(), "", body, http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return nil, err
	}
	var out []FolderFileResult
	if err := json.Unmarshal(ans, &out); err != nil || len(out) != len(b.Files) {
		return nil, ha.Errorf(ha.KindInternal, "unreadable answer to a batch of %d files from %s (%d results; %v)", len(b.Files), c.BaseURL(addr), len(out), err)
	}
	return out, nil
}

// writeQuery is the part of a chunk's or a whole file's query that names
// the write: who sends it at which epoch, and the file (readChunk parses it).
func writeQuery(w FolderWrite) url.Values {
	q := url.Values{}
	q.Set("from", w.From)
	q.Set("epoch", strconv.FormatInt(int64(w.Epoch), 10))
	q.Set("path", w.File.Path)
	q.Set("size", strconv.FormatInt(w.File.Size, 10))
	q.Set("mtime", strconv.FormatInt(w.File.MTime, 10))
	return q
}

// putBytes PUTs data with its checksum to path?q and decodes the JSON
// answer into out; what names the upload in the error.
func (c *Client) putBytes(ctx context.Context, addr, path string, q url.Values, sum string, data []byte, out any, what string) error {
	hdr := http.Header{}
	if sum != "" {
		hdr.Set(ChunkSumHeader, sum)
	}
	hdr.Set("Content-Type", "application/octet-stream")
	ans, err := c.send(ctx, http.MethodPut, addr, path+"?"+q.Encode(), "", data, hdr)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(ans, out); err != nil {
		return ha.Wrap(ha.KindInternal, err, "unreadable answer to %s from %s", what, c.BaseURL(addr))
	}
	return nil
}

// FolderCommit is POST /v1/folders/{folder}/commit: the receiver checks the
// whole file's SHA-256 and renames it into place.
func (c *Client) FolderCommit(ctx context.Context, addr, folder string, w FolderWrite) (FileEntry, error) {
	var e FileEntry
	err := c.callJSON(ctx, http.MethodPost, addr, folderPath(folder, "commit"), "", w, &e)
	return e, err
}

// FolderDelete is POST /v1/folders/{folder}/delete (delete: mirror).
func (c *Client) FolderDelete(ctx context.Context, addr, folder string, w FolderWrite) error {
	return c.callJSON(ctx, http.MethodPost, addr, folderPath(folder, "delete"), "", w, nil)
}

// FolderSource is POST /v1/folders/{folder}/source.
func (c *Client) FolderSource(ctx context.Context, addr, folder string, s FolderSource) error {
	return c.callJSON(ctx, http.MethodPost, addr, folderPath(folder, "source"), "", s, nil)
}

// IsConflict reports whether err is an answer of kind Conflict.
func IsConflict(err error) bool {
	var he *ha.Error
	return errors.As(err, &he) && he.Kind == ha.KindConflict
}
