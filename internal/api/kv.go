package api

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/haven-ha/haven/internal/ha"
)

// KVPutRequest is the body of POST /v1/kv/{key}: a fenced write of the
// service's shared state, made by the service on the active node.
type KVPutRequest struct {
	Value string   `json:"value"`
	Epoch ha.Epoch `json:"epoch"`        // the epoch the writer serves at
	ID    string   `json:"id,omitempty"` // idempotency id: a repeat is applied once
}

// KVResult answers a fenced read or write.
type KVResult struct {
	Key    string   `json:"key"`
	Value  string   `json:"value"`
	Found  bool     `json:"found"`
	Node   string   `json:"node"`
	Epoch  ha.Epoch `json:"epoch"`
	Rev    int64    `json:"rev"`              // store revision of the write, or of the read
	Repeat bool     `json:"repeat,omitempty"` // this id had committed already
}

// KVStore is what an agent offers for the fenced data routes. A Source
// that implements it gets POST and GET /v1/kv/{key}. Errors of kind
// Conflict mean nothing was written (the epoch is not current); other
// failures of a write leave its outcome unknown.
type KVStore interface {
	KVPut(ctx context.Context, key string, req KVPutRequest) (KVResult, error)
	KVGet(ctx context.Context, key string, epoch ha.Epoch) (KVResult, error)
}

// maxKVID bounds an idempotency id: every store must be able to keep it.
const maxKVID = 200

var kvKey = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// registerKV adds the fenced data routes. Both need the bearer token: the
// data is the service's, and only the service should touch it. Writes are
// not audited (they are the service's traffic, not operator actions).
func registerKV(mux *http.ServeMux, kv KVStore, o Options) {
	guard := func(h func(w http.ResponseWriter, r *http.Request, key string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := o.authorized(r); err != nil {
				WriteError(w, StatusOf(err), err.Error())
				return
			}
			key := r.PathValue("key")
			if !kvKey.MatchString(key) {
				WriteError(w, http.StatusBadRequest, "key must be 1 to 200 letters, digits, '.', '_' or '-'")
				return
			}
			h(w, r, key)
		}
	}
	mux.HandleFunc("POST /v1/kv/{key}", guard(func(w http.ResponseWriter, r *http.Request, key string) {
		body, err := readBody(w, r)
		if err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		var req KVPutRequest
		if err := decode(body, &req); err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		if len(req.ID) > maxKVID {
			WriteError(w, http.StatusBadRequest, "id must be at most 200 bytes (a UUID is plenty)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		res, err := kv.KVPut(ctx, key, req)
		if err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
	mux.HandleFunc("GET /v1/kv/{key}", guard(func(w http.ResponseWriter, r *http.Request, key string) {
		epoch, err := strconv.ParseInt(r.URL.Query().Get("epoch"), 10, 64)
		if err != nil || epoch <= 0 {
			WriteError(w, http.StatusBadRequest, "epoch=N is required: the epoch the reader serves at")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		res, err := kv.KVGet(ctx, key, ha.Epoch(epoch))
		if err != nil {
			WriteError(w, StatusOf(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, ha.Errorf(ha.KindInvalid, "request body: %v (at most %d bytes of JSON)", err, maxBody)
	}
	return b, nil
}
