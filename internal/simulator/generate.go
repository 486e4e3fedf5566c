package simulator

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

const day = 24 * time.Hour

var (
	purposes   = [...]string{"zapier", "n8n", "google sheets", "custom"}
	oldResults = []string{"exists", "not_exists", "catchall", "invalid_syntax", "unknown"}
	oldWeights = []int{60, 20, 10, 5, 5}
	newResults = []string{"valid", "invalid", "catchall", "invalid_syntax", "disposable_domain", "unknown"}
	newWeights = []int{55, 18, 10, 5, 5, 7}
)

// patternLen is the period of a task's per-email results: long enough to mix results, short
// enough to keep a large simulated population cheap.
const patternLen = 32

// generate builds the seeded data set. Every user, key and task draws from a source of its
// own derived from the seed and its position, so changing one knob (more tasks, say) does not
// reshuffle everything else.
func (s *Sim) generate(anchor time.Time) {
	cfg := s.cfg
	// Alternating vocabularies guarantees both appear among any two users.
	flip := seededRand(cfg.Seed, "vocab").IntN(2)
	g := 0
	for i := range cfg.Users {
		u := s.userLocked(deriveUUID(cfg.Seed, fmt.Sprintf("user/%d", i)))
		u.newVocab = (i+flip)%2 == 1
		for j := range cfg.KeysPerUser {
			s.generateKey(u, i, j, anchor)
		}
		for j := range cfg.TasksPerUser {
			s.generateTask(u, i, j, g, anchor)
			g++
		}
	}
}

func (s *Sim) generateKey(u *user, ui, j int, anchor time.Time) {
	cfg := s.cfg
	label := fmt.Sprintf("user/%d/key/%d", ui, j)
	r := seededRand(cfg.Seed, label)
	purpose := purposes[(ui+j)%len(purposes)]
	name := fmt.Sprintf("%s key %d", purpose, j+1)
	if u.newVocab && purpose == "google sheets" {
		purpose = "google_sheets"
	}
	span := time.Duration(cfg.HistoryDays) * day
	k := &key{Key: Key{
		ID:        deriveUUID(cfg.Seed, label),
		Name:      name,
		Purpose:   purpose,
		CreatedAt: anchor.Add(-span - time.Hour - randDuration(r, 72*time.Hour)).Truncate(time.Microsecond),
	}}
	// About one key in five is never used, so null last_used_at shows up.
	if (ui+j)%5 != 4 && cfg.RequestsPerKeyPerDay > 0 {
		for d := range cfg.HistoryDays {
			n := cfg.RequestsPerKeyPerDay/2 + r.IntN(cfg.RequestsPerKeyPerDay+1)
			start := anchor.Add(-time.Duration(d+1) * day)
			for range n {
				k.reqs = append(k.reqs, start.Add(randDuration(r, day)).Truncate(time.Microsecond).UnixNano())
			}
		}
		slices.Sort(k.reqs)
	}
	u.keys = append(u.keys, k)
	u.keyByID[k.ID] = k
}

// generateTask makes task j of user ui; g numbers tasks across users and picks the wire
// quirks, so that any data set with enough tasks shows every quirk whatever the seed.
func (s *Sim) generateTask(u *user, ui, j, g int, anchor time.Time) {
	cfg := s.cfg
	label := fmt.Sprintf("user/%d/task/%d", ui, j)
	r := seededRand(cfg.Seed, label)
	span := time.Duration(cfg.HistoryDays) * day

	var created time.Time
	var emails int
	var duration time.Duration
	switch {
	case j == 0: // still running for hours after the anchor
		created = anchor.Add(-2*time.Minute - randDuration(r, 18*time.Minute))
		emails = 500 + r.IntN(1501)
		duration = 2*time.Hour + randDuration(r, 2*time.Hour)
	case j == 1:
		created = anchor.Add(-time.Hour - randDuration(r, 2*time.Hour))
		emails = 200 + r.IntN(801)
		duration = 4*time.Hour + randDuration(r, 4*time.Hour)
	default:
		if span > 0 {
			created = anchor.Add(-randDuration(r, span))
		} else {
			created = anchor.Add(-time.Duration(j) * 10 * time.Minute)
		}
		emails = 1 + r.IntN(2000)
		duration = time.Minute + randDuration(r, 29*time.Minute)
	}

	failPct := 0
	switch {
	case j >= 2 && g%8 == 4: // a small task where every email failed
		failPct = 100
		emails = 1 + r.IntN(5)
	case g%2 == 1:
		failPct = 1 + r.IntN(5)
	}

	vocab, weights := oldResults, oldWeights
	if u.newVocab {
		vocab, weights = newResults, newWeights
	}
	pattern := make([]uint8, patternLen)
	for i := range pattern {
		pattern[i] = uint8(pick(r, weights))
	}

	id := deriveUUID(cfg.Seed, label)
	t := &task{
		explicit: Task{
			ID:            id,
			CreatedAt:     created.Truncate(time.Microsecond),
			Emails:        emails,
			OmitJobStatus: g%5 == 2,
		},
		gen: &progress{
			// Whole microseconds keep every derived timestamp exact in Postgres.
			perEmail:    max((duration / time.Duration(emails)).Truncate(time.Microsecond), time.Microsecond),
			failPct:     failPct,
			vocab:       vocab,
			pattern:     pattern,
			aggregates:  u.newVocab,
			rolePct:     2 + r.IntN(10),
			omitResults: g%7 == 3,
		},
		nullUpdated: g%6 == 5,
		xFuture:     g%3 == 1,
	}
	if g%4 != 0 {
		t.explicit.WebhookURL = "https://hooks.example.test/tasks/" + id
	}
	if t.xFuture {
		t.explicit.Source = "api_key"
	}
	u.tasks = append(u.tasks, t)
	u.taskByID[id] = t
}

// pick returns an index drawn with the given percentage weights.
func pick(r *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

func randDuration(r *rand.Rand, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(d)))
}

// seededRand returns a source determined by the seed and a label.
func seededRand(seed int64, label string) *rand.Rand {
	h := sha256.Sum256(fmt.Appendf(nil, "%d/%s", seed, label))
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:16])))
}

// deriveUUID returns a v4-shaped UUID determined by the seed and a label.
func deriveUUID(seed int64, label string) string {
	h := sha256.Sum256(fmt.Appendf(nil, "uuid/%d/%s", seed, label))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
