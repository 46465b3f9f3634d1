package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/council/activityhistory/eventstore"
)

// Verification is the outcome of verifying one stream.
type Verification struct {
	TargetID string
	Verified bool
	// Records counts the records that verified: all of them when Verified,
	// else those before the first bad one.
	Records uint64
	// Erased lists the revisions whose payloads were erased (named by an
	// erasure record), when Verified.
	Erased []uint64
	// Head is the last record that verified (nil when none did).
	Head *eventstore.Head
	// RecordedHead is the head recorded outside the stream, when the store
	// keeps one.
	RecordedHead *eventstore.Head
	// Failure says where and why verification failed.
	Failure *eventstore.ChainError
}

// Verify checks the hash chain of a target's stream, and the stream
// against its recorded head when the store keeps heads. A tampered stream
// is a Verification with Verified false, not an error; a stream with
// neither records nor a recorded head gives query.ErrNotFound.
func (s *Service) Verify(ctx context.Context, targetID string) (Verification, error) {
	tid, err := s.targetID(targetID)
	if err != nil {
		return Verification{}, err
	}
	v := Verification{TargetID: tid}
	var ce *eventstore.ChainError
	if s.st.Heads != nil {
		v.RecordedHead, err = s.st.Heads.Head(ctx, tid)
		switch {
		case errors.As(err, &ce):
			// The recorded head itself was removed: a failure to report.
			v.Failure = ce
			v.RecordedHead = nil
		case errors.Is(err, eventstore.ErrNotFound):
			v.RecordedHead = nil
		case err != nil:
			return v, fmt.Errorf("recorded head of %s: %w", tid, err)
		}
	}
	c, err := eventstore.VerifyStream(ctx, s.st.Streams, tid, v.RecordedHead)
	head := c.Head
	switch {
	case errors.As(err, &ce):
		if v.Failure == nil {
			v.Failure = ce
		}
	case err != nil && v.Failure == nil:
		return v, storeErr("verify "+tid, err)
	}
	v.Head = head
	if v.Failure == nil {
		v.Verified = true
		v.Records = head.Revision + 1
		v.Erased = c.Erased
		return v, nil
	}
	v.Records = v.Failure.Revision
	if head != nil {
		v.Records = min(v.Records, head.Revision+1)
	}
	return v, nil
}
