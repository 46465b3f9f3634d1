package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/council/activityhistory/activity"
)

// Filtered pages examine entries one by one; these bound the work.
const (
	// scanPerCall is the most entries one read-model call examines, which
	// keeps one call short on a shared Redis.
	scanPerCall = 1000
	// scanPerPage is the most entries one request examines. A page that
	// reaches it comes back short, with a token that continues where the
	// scan stopped.
	scanPerPage = 10_000
)

// HistoryRequest is a request for one page of a target's history.
type HistoryRequest struct {
	TargetID string
	PageSize int
	Token    string // "" for the first page
	Filter   activity.FilterInput
	// MinPosition is the store position the page must reflect (0 = any),
	// already awaited: it keeps a cache from serving an older page.
	MinPosition uint64
}

// HistoryPage is one page of a target's history.
type HistoryPage struct {
	// Results are activity documents as the read model holds them (API
	// JSON), newest first.
	Results []json.RawMessage
	// NextToken continues below the last result; nil on the last page.
	NextToken *string
	// Read says what was asked of the read model, for the query log.
	Read ReadStats
}

// ReadStats describe the read-model work behind a page.
type ReadStats struct {
	TargetID string // canonical form
	Filter   string // canonical form, "" for none
	Index    string // the read model's name of the target's index
	Before   string // the bound the page was read below, "" for the first
	Lower    string // the sort-key bound of from (inclusive), "" for none
	Upper    string // the sort-key bound of to (exclusive), "" for none
	Limit    int
	Calls    int // read-model round trips (0: the page cache served it)
	Scanned  int // entries examined
}

// tokenMessage is what clients are told about any bad token: a forged one
// and one from another target or filter are indistinguishable by design.
const tokenMessage = "is invalid or does not belong to this targetId and these filters"

// History returns one page of a target's history, newest first, continuing
// after the request's token. Bad input gives a *activity.ValidationError
// naming targetId, pageSize, paginationToken or a filter (a bad token also
// wraps the *TokenError saying why); a target without history gives
// ErrNotFound. On error the page holds no results.
//
// An unfiltered or date-bounded page is one read-model call. A page
// filtered on type or sourceDomain is never short while more matches
// exist, unless scanPerPage entries were examined: then NextToken
// continues below the last one examined.
func (s *Service) History(ctx context.Context, req HistoryRequest) (HistoryPage, error) {
	var p HistoryPage
	bad := map[string][]string(nil) // made on the first problem: most requests have none
	refuse := func(field string, why ...string) {
		if bad == nil {
			bad = map[string][]string{}
		}
		bad[field] = why
	}
	tid, err := s.v.TargetID(req.TargetID)
	if err != nil {
		refuse("targetId", err.Error())
	}
	if req.PageSize < 1 || req.PageSize > s.maxPageSize {
		refuse("pageSize", s.pageSizeMessage())
	}
	f, err := s.v.Filter(req.Filter)
	var fe *activity.ValidationError
	if errors.As(err, &fe) {
		for k, v := range fe.Fields {
			refuse(k, v...)
		}
	}
	if bad != nil {
		// A token cannot be checked without a valid target id and filter.
		return p, &activity.ValidationError{Fields: bad}
	}
	p.Read = ReadStats{TargetID: tid, Filter: f.String(), Limit: req.PageSize + 1}
	p.Read.Lower, p.Read.Upper = f.KeyRange()
	if req.Token != "" {
		if p.Read.Before, err = s.cursors.DecodeIn(tid, p.Read.Filter, req.Token); err != nil {
			return p, fmt.Errorf("%w: %w", activity.Invalid("paginationToken", tokenMessage), err)
		}
	}

	// One more than asked only tells whether a next page exists.
	var entries []activity.Entry
	before, found := p.Read.Before, false
	for {
		got, err := s.r.Page(ctx, tid, activity.PageQuery{
			Before: before, Limit: p.Read.Limit - len(entries), Filter: f,
			MaxScan:     min(scanPerCall, scanPerPage-p.Read.Scanned),
			MinPosition: req.MinPosition,
		})
		if err != nil {
			return p, fmt.Errorf("read history of %s: %w", tid, err)
		}
		if !got.Cached {
			p.Read.Calls++
		}
		p.Read.Scanned += got.Scanned
		p.Read.Index = got.Index
		found = found || got.Found
		entries = append(entries, got.Entries...)
		before = got.ScannedTo
		if before == "" || p.Read.Scanned >= scanPerPage {
			break
		}
	}
	if !found {
		return p, fmt.Errorf("history of %s: %w", tid, ErrNotFound)
	}
	switch {
	case len(entries) > req.PageSize:
		entries = entries[:req.PageSize]
		next := s.cursors.EncodeIn(tid, p.Read.Filter, entries[req.PageSize-1].Key)
		p.NextToken = &next
	case before != "":
		// The scan bound stopped the page: continue below what was examined.
		next := s.cursors.EncodeIn(tid, p.Read.Filter, before)
		p.NextToken = &next
	}
	p.Results = make([]json.RawMessage, len(entries))
	for i, e := range entries {
		p.Results[i] = e.Doc
	}
	return p, nil
}
