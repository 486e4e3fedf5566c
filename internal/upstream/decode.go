package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/usage-sync/usage-sync/internal/safetext"
)

// The upstream marks no field as required and has changed types and vocabularies before, so
// decoding goes field by field through raw messages: a null, missing or oddly typed field
// becomes "unknown" instead of failing the whole payload. Only a body that is not JSON, or
// not the object the endpoint promises, is an error.

// decodeError explains why a body could not be used; Err is the json error, if any.
type decodeError struct {
	msg string
	err error
}

func (e *decodeError) Error() string { return e.msg }
func (e *decodeError) Unwrap() error { return e.err }

type object map[string]json.RawMessage

// decodeObject parses body as a JSON object.
func decodeObject(body []byte) (object, error) {
	var obj object
	if err := json.Unmarshal(body, &obj); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, &decodeError{msg: fmt.Sprintf("invalid JSON at offset %d: %s", syn.Offset, syn.Error()), err: err}
		case errors.As(err, &typ):
			return nil, &decodeError{msg: "expected a JSON object, got " + typ.Value, err: err}
		default:
			return nil, &decodeError{msg: "invalid JSON: " + err.Error(), err: err}
		}
	}
	if obj == nil {
		return nil, &decodeError{msg: "expected a JSON object, got null"}
	}
	return obj, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// jsonKind names the JSON type of raw for error messages.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// array returns the elements of an array field; absent or null is an empty array, anything
// else is the wrong shape.
func (o object) array(field string) ([]json.RawMessage, error) {
	raw := o[field]
	if isNull(raw) {
		return nil, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, &decodeError{msg: fmt.Sprintf("field %q: expected an array, got %s", field, jsonKind(raw)), err: err}
	}
	return elems, nil
}

func (o object) object(field string) object {
	return asObject(o[field])
}

func asObject(raw json.RawMessage) object {
	var obj object
	if isNull(raw) || json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return obj
}

// str accepts a string, or a number's text (ids have been numbers elsewhere).
func (o object) str(field string) string {
	raw := bytes.TrimSpace(o[field])
	if isNull(raw) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	if jsonKind(raw) == "number" {
		return string(raw)
	}
	return ""
}

func (o object) int(field string) *int64 { return parseInt(o[field]) }

// numberText is the text of a number the upstream sent as a JSON number or as a string (counts
// and progress have come as both); ok is false when the field is absent or null.
func numberText(raw json.RawMessage) (text string, ok bool) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s), true
	}
	return string(raw), true
}

// parseInt accepts a JSON number (integral or not, truncated) or a numeric string.
func parseInt(raw json.RawMessage) *int64 {
	text, ok := numberText(raw)
	if !ok {
		return nil
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return &n
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return nil
	}
	n := int64(f)
	return &n
}

func (o object) float(field string) *float64 {
	text, ok := numberText(o[field])
	if !ok {
		return nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func (o object) bool(field string) *bool {
	raw := bytes.TrimSpace(o[field])
	var b bool
	if json.Unmarshal(raw, &b) == nil && !isNull(raw) {
		return &b
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return &b
		}
	}
	return nil
}

// time parses an RFC 3339 timestamp, with or without fractional seconds. Empty or null is
// nil; bad reports a value that is present but not a timestamp.
func (o object) time(field string) (t *time.Time, bad bool) {
	raw := o[field]
	if isNull(raw) {
		return nil, false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, true
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, false
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, true
	}
	v = v.UTC()
	return &v, false
}

// optTime is time for fields the worker can do without: unparsable reads as unknown.
func (o object) optTime(field string) *time.Time {
	t, _ := o.time(field)
	return t
}

// counts reads an object of counts; nil when absent, null or not an object. Entries that are
// not numbers are skipped.
func (o object) counts(field string) map[string]int64 {
	obj := o.object(field)
	if obj == nil {
		return nil
	}
	m := make(map[string]int64, len(obj))
	for name, raw := range obj {
		if n := parseInt(raw); n != nil {
			m[name] = *n
		}
	}
	return m
}

// purposeCounts reads counts keyed by purpose, merging the spellings of one purpose.
func (o object) purposeCounts(field string) map[string]int64 {
	m := make(map[string]int64)
	for name, n := range o.counts(field) {
		p := NormalizePurpose(safetext.Clean(name, maxName))
		m[p] = satAdd(m[p], n)
	}
	return m
}

// decodeList decodes a listing: the top-level object and its array field, each entry through
// decodeEntry, which names why it cannot use an entry. Entries it cannot use are counted by
// reason, not fatal: one bad entry must not cost the page.
func decodeList[T any](body []byte, field string, decodeEntry func(object) (T, string)) (obj object, items []T, drops Drops, err error) {
	if obj, err = decodeObject(body); err != nil {
		return nil, nil, nil, err
	}
	elems, err := obj.array(field)
	if err != nil {
		return nil, nil, nil, err
	}
	items = make([]T, 0, len(elems))
	for _, raw := range elems {
		v, why := decodeEntry(asObject(raw))
		if why != "" {
			drops.add(why)
			continue
		}
		items = append(items, v)
	}
	return obj, items, drops, nil
}

func decodeKeyList(body []byte) (KeyList, error) {
	obj, keys, drops, err := decodeList(body, "keys", decodeKey)
	if err != nil {
		return KeyList{}, err
	}
	list := KeyList{Keys: keys, Dropped: drops.Total(), Drops: drops, Count: len(keys) + drops.Total()}
	if n := obj.int("count"); n != nil {
		list.Count = int(*n)
	}
	if err := list.checkBounds(); err != nil {
		return KeyList{}, err
	}
	return list, nil
}

func decodeKey(o object) (Key, string) {
	id, why := entryID(o)
	if why != "" {
		return Key{}, why
	}
	return Key{
		ID:            id,
		Name:          safetext.Clean(o.str("name"), maxName),
		Purpose:       NormalizePurpose(safetext.Clean(o.str("purpose"), maxName)),
		IsActive:      o.bool("is_active"),
		CreatedAt:     o.optTime("created_at"),
		LastUsedAt:    o.optTime("last_used_at"),
		TotalRequests: o.int("total_requests"),
	}, ""
}

func decodeUsage(body []byte) (UsageMetrics, error) {
	obj, err := decodeObject(body)
	if err != nil {
		return UsageMetrics{}, err
	}
	m := UsageMetrics{
		UserID:            obj.str("user_id"),
		TotalRequests:     obj.int("total_requests"),
		TotalAPIKeys:      obj.int("total_api_keys"),
		RequestsByPurpose: obj.purposeCounts("requests_by_purpose"),
		APIKeysByPurpose:  obj.purposeCounts("api_keys_by_purpose"),
		LastUsedAt:        obj.optTime("last_used_at"),
	}
	if err := m.checkBounds(); err != nil {
		return UsageMetrics{}, err
	}
	return m, nil
}

func decodeTaskPage(body []byte) (TaskPage, error) {
	obj, tasks, drops, err := decodeList(body, "tasks", decodeTask)
	if err != nil {
		return TaskPage{}, err
	}
	page := TaskPage{Tasks: tasks, Dropped: drops.Total(), Drops: drops}
	for field, dst := range map[string]*int{"count": &page.Count, "limit": &page.Limit, "offset": &page.Offset} {
		if n := obj.int(field); n != nil {
			*dst = int(*n)
		}
	}
	for _, t := range page.Tasks {
		if err := t.checkBounds(); err != nil {
			return TaskPage{}, err
		}
	}
	return page, nil
}

// decodeTask names why it cannot use an entry the worker cannot key or window: no usable id,
// or a created_at that is missing or unparsable.
func decodeTask(o object) (Task, string) {
	id, why := entryID(o)
	if why != "" {
		return Task{}, why
	}
	created, _ := o.time("created_at")
	if created == nil {
		return Task{}, dropNoCreatedAt
	}
	m := o.object("metrics")
	return Task{
		ID:         id,
		UserID:     o.str("user_id"),
		WebhookURL: safetext.Clean(o.str("webhook_url"), maxURL),
		Source:     safetext.Clean(o.str("source"), maxName),
		CreatedAt:  created,
		UpdatedAt:  o.optTime("updated_at"),
		StartedAt:  o.optTime("started_at"),
		FinishedAt: o.optTime("finished_at"),
		Metrics: TaskMetrics{
			TotalEmailAddresses:         m.int("total_email_addresses"),
			JobStatus:                   m.counts("job_status"),
			VerificationStatus:          m.counts("verification_status"),
			Progress:                    m.float("progress"),
			ProgressPercent:             m.float("progress_percent"),
			LastVerificationRequestedAt: m.optTime("last_verification_requested_at"),
			LastVerificationCompletedAt: m.optTime("last_verification_completed_at"),
		},
	}, ""
}

// errorBody is the upstream's error payload: {"error": "...", "fields": {...}}.
type errorBody struct {
	message string
	fields  map[string]string
}

func decodeErrorBody(body []byte) errorBody {
	obj, err := decodeObject(body)
	if err != nil {
		// Proxies answer with HTML or plain text; keep the start of it as the message.
		return errorBody{message: strings.TrimSpace(string(body))}
	}
	eb := errorBody{message: obj.str("error")}
	if eb.message == "" {
		eb.message = obj.str("message")
	}
	if f := obj.object("fields"); len(f) > 0 {
		eb.fields = make(map[string]string, len(f))
		for name := range f {
			eb.fields[name] = f.str(name)
		}
	}
	return eb
}
