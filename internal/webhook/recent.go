package webhook

import (
	"crypto/sha256"
	"sync"
)

// rememberedDefault is how many deliveries a process remembers as acted on: at 32 bytes a key
// (plus the map's overhead, about 100 bytes an entry) some 400 KiB, and far more distinct
// deliveries than one TRIGGER_MIN_INTERVAL sees.
const rememberedDefault = 4096

// recent is a bounded set of delivery keys: past its size the oldest key is forgotten, so a
// very old delivery replayed costs at most one more trigger, which TRIGGER_MIN_INTERVAL bounds.
type recent struct {
	mu   sync.Mutex
	keys map[[sha256.Size]byte]struct{}
	ring [][sha256.Size]byte // insertion order; next is where the next key goes
	next int
}

func newRecent(size int) *recent {
	return &recent{keys: make(map[[sha256.Size]byte]struct{}, size), ring: make([][sha256.Size]byte, 0, size)}
}

// add remembers k and reports whether it was new; checking and adding at once lets two
// identical deliveries racing each other act once.
func (r *recent) add(k [sha256.Size]byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.keys[k]; ok {
		return false
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, k)
	} else {
		delete(r.keys, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % len(r.ring)
	}
	r.keys[k] = struct{}{}
	return true
}

// remove forgets k: the delivery was not acted on after all. Its ring slot is left in place:
// when that slot is reused, a later copy of k may be forgotten early, which costs at most one
// more trigger.
func (r *recent) remove(k [sha256.Size]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, k)
}
