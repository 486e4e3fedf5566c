package simulator

import "time"

// task is one verification task. Added tasks show explicit as it is; generated ones keep
// their fixed fields (ID, CreatedAt, Emails, WebhookURL, Source, OmitJobStatus) in explicit
// and derive the rest from gen and the clock.
type task struct {
	explicit Task
	gen      *progress

	// Wire quirks the real API shows on some tasks.
	nullUpdated bool
	xFuture     bool
}

// progress is how a generated task advances: one email every perEmail, from its creation.
type progress struct {
	perEmail    time.Duration
	failPct     int      // share of processed emails that fail without a result
	vocab       []string // result names of the task's vocabulary
	pattern     []uint8  // result (index into vocab) of each email, repeating
	aggregates  bool     // new vocabulary: also send role_based and disposable_domain_emails
	rolePct     int
	omitResults bool
}

// taskView is a task as the wire shows it at one instant.
type taskView struct {
	TaskState
	processing    int
	omitJobStatus bool
	webhookURL    string
	startedAt     *time.Time
	lastRequested *time.Time
	lastCompleted *time.Time
	updatedAt     *time.Time
	nullUpdated   bool
	xFuture       bool
}

func (t *task) createdAt() time.Time { return t.explicit.CreatedAt }

func (t *task) view(now time.Time) taskView {
	e := t.explicit
	v := taskView{
		TaskState: TaskState{
			ID:        e.ID,
			CreatedAt: e.CreatedAt,
			Emails:    e.Emails,
			Source:    e.Source,
		},
		omitJobStatus: e.OmitJobStatus,
		webhookURL:    e.WebhookURL,
		nullUpdated:   t.nullUpdated,
		xFuture:       t.xFuture,
	}
	created := e.CreatedAt
	v.lastRequested = &created
	if t.gen == nil {
		v.Done, v.Failed, v.Finished = e.Done, e.Failed, e.Finished
		v.Results = cloneResults(e.Results)
		if e.FinishedAt != nil {
			fa := *e.FinishedAt
			v.FinishedAt, v.lastCompleted = &fa, &fa
		}
		if e.Done+e.Failed > 0 || e.Finished {
			v.startedAt = &created
		}
	} else {
		g := t.gen
		processed := e.Emails
		if elapsed := now.Sub(created); elapsed < 0 {
			processed = 0
		} else if n := int(elapsed / g.perEmail); n < processed {
			processed = n
		}
		v.Failed = processed * g.failPct / 100
		v.Done = processed - v.Failed
		v.Finished = processed >= e.Emails
		if v.Finished {
			fa := created.Add(time.Duration(e.Emails) * g.perEmail)
			v.FinishedAt = &fa
		} else {
			v.processing = min(e.Emails-processed, 2)
		}
		if !g.omitResults {
			v.Results = g.counts(v.Done)
		}
		v.startedAt = &created
		if processed > 0 {
			lc := created.Add(time.Duration(processed) * g.perEmail)
			v.lastCompleted = &lc
		}
	}
	updated := created
	if v.lastCompleted != nil && v.lastCompleted.After(updated) {
		updated = *v.lastCompleted
	}
	v.updatedAt = &updated
	return v
}

// freeze returns the task's current state as explicit fields.
func (t *task) freeze(now time.Time) Task {
	v := t.view(now)
	return Task{
		ID:            v.ID,
		CreatedAt:     v.CreatedAt,
		Emails:        v.Emails,
		Done:          v.Done,
		Failed:        v.Failed,
		Finished:      v.Finished,
		FinishedAt:    v.FinishedAt,
		Results:       v.Results,
		OmitJobStatus: v.omitJobStatus,
		WebhookURL:    v.webhookURL,
		Source:        v.Source,
	}
}

// counts splits the first done emails across results. Each email's result is fixed by its
// position, so every count only grows as the task progresses, as real results do.
func (g *progress) counts(done int) map[string]int64 {
	m := make(map[string]int64, len(g.vocab)+2)
	full, rem := done/len(g.pattern), done%len(g.pattern)
	for i, r := range g.pattern {
		c := int64(full)
		if i < rem {
			c++
		}
		if c > 0 {
			m[g.vocab[r]] += c
		}
	}
	if g.aggregates {
		// Overlapping aggregates, not results: a worker that sums them in overcharges.
		m["role_based"] = int64(done * g.rolePct / 100)
		m["disposable_domain_emails"] = m["disposable_domain"]
	}
	return m
}
