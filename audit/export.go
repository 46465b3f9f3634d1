package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

// Export page sizes and the bound on records examined per request.
const (
	DefaultExportPageSize = 500
	MaxExportPageSize     = 5000
	// exportScan is the most records one request examines. A filtered page
	// that reaches it comes back short, with a token that continues after
	// the last record examined.
	exportScan = 20_000
)

// ExportRequest asks for one page of every target's activities.
type ExportRequest struct {
	Filter   activity.FilterInput
	PageSize int
	Token    string // "" for the first page
}

// ExportPage is one page of an export, in store position order.
type ExportPage struct {
	Activities []activity.Activity
	// NextToken continues after the last record examined; nil once the
	// export has reached what the store held when the request began.
	NextToken *string
	// ResumeToken is always set: kept by an incremental load, it returns
	// exactly the records stored after this page.
	ResumeToken string
	// Filter (canonical), From (the position continued after), Scanned
	// and Last (the last position examined) are for the audit log.
	Filter  string
	From    uint64
	Scanned int
	Last    uint64
}

// Export returns one page of the activities of every target in store
// position order, which new writes cannot disturb: they always land after
// every position already served. An activity expired when the request
// began (see activity.Expired) is examined but not exported.
func (s *Service) Export(ctx context.Context, req ExportRequest) (ExportPage, error) {
	var p ExportPage
	if s.st.Log == nil {
		return p, ErrNoExport
	}
	f, err := s.v.Filter(req.Filter)
	if err != nil {
		return p, err
	}
	if req.PageSize < 1 || req.PageSize > MaxExportPageSize {
		return p, activity.Invalid("pageSize", fmt.Sprintf("must be an integer from 1 to %d", MaxExportPageSize))
	}
	p.Filter = f.String()
	scope := exportScope(p.Filter)
	if req.Token != "" {
		if p.From, err = s.cursors.DecodePosition(scope, req.Token); err != nil {
			return p, fmt.Errorf("%w: %w", activity.Invalid("paginationToken", "is invalid or does not belong to these filters"), err)
		}
	}
	end, err := s.st.Log.LastPosition(ctx)
	if err != nil {
		return p, fmt.Errorf("export: %w", err)
	}
	p.Last = p.From
	if p.From < end {
		if err := s.scan(ctx, &p, f, req.PageSize, end, s.now()); err != nil {
			return p, err
		}
	}
	p.ResumeToken = s.cursors.EncodePosition(scope, p.Last)
	if p.Last < end {
		p.NextToken = &p.ResumeToken
	}
	return p, nil
}

// errPageDone stops the subscription once a page is complete.
var errPageDone = errors.New("page done")

// scan follows the store from p.From until the page is full, end is
// reached or exportScan records were examined. Activities expired at now
// are skipped.
func (s *Service) scan(ctx context.Context, p *ExportPage, f activity.Filter, size int, end uint64, now time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := s.st.Log.Subscribe(ctx, p.From, func(_ context.Context, batch []eventstore.Record) error {
		for _, r := range batch {
			if r.Position > end {
				return errPageDone
			}
			p.Scanned++
			p.Last = r.Position
			if r.Type == activity.EventRecorded {
				a, err := activity.DecodeEvent(r.Type, r.Data)
				if err != nil {
					return fmt.Errorf("export: record at %d: %w", r.Position, err)
				}
				if f.Match(a) && !activity.Expired(a.Expires(), now) {
					p.Activities = append(p.Activities, a)
				}
			}
			if len(p.Activities) == size || r.Position >= end || p.Scanned >= exportScan {
				return errPageDone
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPageDone) {
		return fmt.Errorf("export after %d: %w", p.From, err)
	}
	return nil
}

func exportScope(filter string) string { return "export\x00" + filter }
