package audit

import (
	"context"
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

func replayScope(targetID string) string { return "replay\x00" + targetID }
