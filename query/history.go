package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/council/activityhistory/activity"
)

// HistoryPage is one page of a target's history.
type HistoryPage struct {
	// Results are activity documents as the read model holds them (API
	// JSON), newest first.
	Results []json.RawMessage
	// NextToken continues below the last result; nil on the last page.
	NextToken *string

	targetID string // canonical form
	before   string // the bound the page was read below, "" for the first
}

// tokenMessage is what clients are told about any bad token: a forged one
// and one from another target are indistinguishable by design.
const tokenMessage = "is invalid or does not belong to this targetId"

// History returns pageSize activities of targetID, newest first, continuing
// after token ("" for the first page). Bad input gives a
// *activity.ValidationError naming targetId, pageSize or paginationToken
// (a bad token also wraps the *TokenError saying why); a target without
// history gives ErrNotFound. On error the page holds no results.
func (s *Service) History(ctx context.Context, targetID string, pageSize int, token string) (HistoryPage, error) {
	var p HistoryPage
	var bad map[string][]string
	tid, err := s.v.TargetID(targetID)
	if err != nil {
		bad = map[string][]string{"targetId": {err.Error()}}
	}
	if pageSize < 1 || pageSize > s.maxPageSize {
		if bad == nil {
			bad = map[string][]string{}
		}
		bad["pageSize"] = []string{s.pageSizeMessage()}
	}
	if bad != nil {
		// A token cannot be checked without a valid target id.
		return p, &activity.ValidationError{Fields: bad}
	}
	p.targetID = tid
	if token != "" {
		if p.before, err = s.cursors.Decode(tid, token); err != nil {
			return p, fmt.Errorf("%w: %w", activity.Invalid("paginationToken", tokenMessage), err)
		}
	}

	// One more than asked only tells whether a next page exists.
	docs, found, err := s.r.Page(ctx, tid, p.before, pageSize+1)
	if err != nil {
		return p, fmt.Errorf("read history of %s: %w", tid, err)
	}
	if !found {
		return p, fmt.Errorf("history of %s: %w", tid, ErrNotFound)
	}
	if len(docs) > pageSize {
		docs = docs[:pageSize]
		key, err := sortKeyOf(docs[pageSize-1])
		if err != nil {
			return p, fmt.Errorf("history of %s: %w", tid, err)
		}
		next := s.cursors.Encode(tid, key)
		p.NextToken = &next
	}
	p.Results = make([]json.RawMessage, len(docs))
	for i, d := range docs {
		p.Results[i] = d
	}
	return p, nil
}

// sortKeyOf reads just id and createdAt of a document. The read models
// hold activity.MarshalJSON output, which starts {"id":"…", with createdAt
// before the free-form data, so a plain scan finds them; anything else
// falls back to a JSON decoder that still stops at the two fields.
func sortKeyOf(doc []byte) (string, error) {
	id, created, ok := scanKeyFields(doc)
	if !ok {
		var err error
		if id, created, err = decodeKeyFields(doc); err != nil {
			return "", err
		}
	}
	at, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return "", fmt.Errorf("activity document %s: createdAt: %w", id, err)
	}
	return activity.Activity{ID: id, CreatedAt: at}.SortKey(), nil
}

// scanKeyFields is the fast path of sortKeyOf. A JSON string cannot hold an
// unescaped quote, so `,"createdAt":"` is a key, and with no object or
// array opened before it, a top-level one.
func scanKeyFields(doc []byte) (id, created string, ok bool) {
	const idKey, createdKey = `{"id":"`, `,"createdAt":"`
	rest, ok := bytes.CutPrefix(doc, []byte(idKey))
	if !ok {
		return "", "", false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", "", false
	}
	id, rest = string(rest[:end]), rest[end:]
	at := bytes.Index(rest, []byte(createdKey))
	if at < 0 || bytes.ContainsAny(rest[:at], "{[") {
		return "", "", false
	}
	rest = rest[at+len(createdKey):]
	end = bytes.IndexByte(rest, '"')
	if end <= 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", "", false
	}
	return id, string(rest[:end]), true
}

// decodeKeyFields reads id and createdAt from any JSON object, stopping as
// soon as it has both.
func decodeKeyFields(doc []byte) (id, created string, err error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", "", errors.New("activity document is not a JSON object")
	}
	for (id == "" || created == "") && dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", "", fmt.Errorf("activity document: %w", err)
		}
		var dst any = &json.RawMessage{}
		switch t {
		case "id":
			dst = &id
		case "createdAt":
			dst = &created
		}
		if err := dec.Decode(dst); err != nil {
			return "", "", fmt.Errorf("activity document field %v: %w", t, err)
		}
	}
	if id == "" || created == "" {
		return "", "", errors.New("activity document lacks id or createdAt")
	}
	return id, created, nil
}
