package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

// Replay page sizes.
const (
	DefaultReplayPageSize = 100
	MaxReplayPageSize     = 1000
)

// ReplayRequest asks for records of one stream, oldest first.
type ReplayRequest struct {
	TargetID     string
	FromRevision uint64
	PageSize     int
	Token        string // continues a replay; excludes FromRevision
}

// ReplayPage is one page of a stream's records.
type ReplayPage struct {
	TargetID  string // canonical: the stream name the hashes cover
	Records   []eventstore.Record
	NextToken *string
}

// Replay reads one page of a target's stream from the event store. An
// unknown stream gives query.ErrNotFound; a revision past the end an empty
// page.
func (s *Service) Replay(ctx context.Context, req ReplayRequest) (ReplayPage, error) {
	var p ReplayPage
	tid, err := s.targetID(req.TargetID)
	if err != nil {
		return p, err
	}
	p.TargetID = tid
	if req.PageSize < 1 || req.PageSize > MaxReplayPageSize {
		return p, activity.Invalid("pageSize", fmt.Sprintf("must be an integer from 1 to %d", MaxReplayPageSize))
	}
	from := req.FromRevision
	if req.Token != "" {
		if from, err = s.cursors.DecodePosition(replayScope(tid), req.Token); err != nil {
			return p, fmt.Errorf("%w: %w", activity.Invalid("paginationToken", "is invalid or does not belong to this targetId"), err)
		}
	}
	recs, err := s.st.Streams.Read(ctx, tid, from, req.PageSize+1)
	var ce *eventstore.ChainError
	if errors.As(err, &ce) && ce.Revision > from {
		// Serve the good records before the break; the page that starts
		// at it is refused.
		recs, err = s.st.Streams.Read(ctx, tid, from, int(ce.Revision-from))
		if err == nil {
			p.Records = recs
			next := s.cursors.EncodePosition(replayScope(tid), ce.Revision)
			p.NextToken = &next
			return p, nil
		}
	}
	if errors.As(err, &ce) {
		return p, &BrokenError{ce}
	}
	if err != nil {
		return p, storeErr("replay "+tid, err)
	}
	if len(recs) > req.PageSize {
		recs = recs[:req.PageSize]
		next := s.cursors.EncodePosition(replayScope(tid), recs[len(recs)-1].Revision+1)
		p.NextToken = &next
	}
	p.Records = recs
	return p, nil
}

// BrokenError says that a stream cannot be replayed from a revision: the
// record there is not the one that belongs (tampered). Verify tells more.
type BrokenError struct {
	*eventstore.ChainError
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("the stream cannot be replayed from revision %d: %s", e.Revision, e.Reason)
}

func replayScope(targetID string) string { return "replay\x00" + targetID }
