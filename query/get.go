package query

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/council/activityhistory/activity"
)

// Get returns one activity document by id. A malformed id gives a
// *activity.ValidationError naming id; an unknown one ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (json.RawMessage, error) {
	cid, err := activity.ID(id)
	if err != nil {
		return nil, activity.Invalid("id", err.Error())
	}
	doc, found, err := s.r.Get(ctx, cid)
	if err != nil {
		return nil, fmt.Errorf("read activity %s: %w", cid, err)
	}
	if !found {
		return nil, fmt.Errorf("activity %s: %w", cid, ErrNotFound)
	}
	return doc, nil
}
