// Package mac is the bridge's HMAC-SHA256, pooled: hmac.New allocates
// five objects, and the bridge signs and verifies every message with one
// key (Options.SigningKey), so a pooled keyed hash makes both
// allocation-free in the steady state. Package wire signs envelopes with
// it, package cloudevent CloudEvents.
package mac

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
)

// Size is the length of a MAC.
const Size = sha256.Size

// A State is a reusable HMAC-SHA256 for one key, reset by Get. It is not
// safe for concurrent use; return it with Put.
type State struct {
	key []byte    // copy of the key H was built with
	H   hash.Hash // hmac.New(sha256.New, key)
	// Scratch is for writing strings to H in chunks without converting
	// them (a conversion allocates).
	Scratch [64]byte
	// Out is where to compute a MAC: a local array would escape to the
	// heap through the hash.Hash call.
	Out [Size]byte
}

// pool holds *State. A state for another key is dropped and a new one
// built.
var pool sync.Pool

// Get returns a reset HMAC state for key.
func Get(key []byte) *State {
	if m, ok := pool.Get().(*State); ok && bytes.Equal(m.key, key) {
		m.H.Reset()
		return m
	}
	return &State{key: bytes.Clone(key), H: hmac.New(sha256.New, key)}
}

// Put returns m to the pool; m must not be used after.
func Put(m *State) { pool.Put(m) }
