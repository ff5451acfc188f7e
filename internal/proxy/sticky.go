package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash/fnv"
	"strings"
)

// macLen is how many bytes of the HMAC the cookie carries (128 bits).
const macLen = 16

// signer makes and checks affinity cookie values: NODE.MAC, where MAC is
// the truncated HMAC-SHA256 of the node name under the configured secret.
// A client can replay a cookie it was given but cannot name a node it was
// never sent to.
type signer struct{ key []byte }

func (s signer) mac(node string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("haven-affinity\x00"))
	h.Write([]byte(node))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:macLen])
}

// Sign returns the cookie value for node.
func (s signer) Sign(node string) string { return node + "." + s.mac(node) }

// Verify returns the node a cookie value names, if its MAC is right.
func (s signer) Verify(v string) (string, bool) {
	i := strings.LastIndexByte(v, '.')
	if i <= 0 || len(v) > 256 {
		return "", false
	}
	node, got := v[:i], v[i+1:]
	want := s.mac(node)
	if !hmac.Equal([]byte(got), []byte(want)) {
		return "", false
	}
	return node, true
}

// hrw picks the node for key by rendezvous (highest random weight) hashing:
// each node scores hash(node, key) and the highest wins. Removing a node
// moves only the keys it had; adding one takes about 1/N of them.
func hrw(key string, nodes []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(key))
		s := mix(h.Sum64())
		if best == "" || s > bestScore {
			best, bestScore = n, s
		}
	}
	return best
}

// mix is the splitmix64 finaliser: FNV alone is too weak in its high bits
// for similar keys.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
