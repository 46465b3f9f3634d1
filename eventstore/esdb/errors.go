package esdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/council/activityhistory/eventstore"
)

// sentinelFor is the store sentinel a client error code stands for, nil
// when none fits.
func sentinelFor(code kurrentdb.ErrorCode) error {
	switch code {
	case kurrentdb.ErrorCodeWrongExpectedVersion,
		kurrentdb.ErrorCodeStreamRevisionConflict,
		kurrentdb.ErrorCodeAppendConsistencyViolation:
		return eventstore.ErrConflict
	case kurrentdb.ErrorCodeResourceNotFound,
		kurrentdb.ErrorCodeStreamDeleted,
		kurrentdb.ErrorCodeStreamTombstoned:
		return eventstore.ErrNotFound
	case kurrentdb.ErrorCodeAppendRecordSizeExceeded,
		kurrentdb.ErrorCodeAppendTransactionSizeExceeded:
		return eventstore.ErrTooLarge
	case kurrentdb.ErrorUnavailable,
		kurrentdb.ErrorCodeConnectionClosed,
		kurrentdb.ErrorCodeNotLeader,
		kurrentdb.ErrorCodeDeadlineExceeded,
		kurrentdb.ErrorAborted:
		return eventstore.ErrUnavailable
	}
	return nil
}

// sentinelOf finds the store sentinel for any error the client returns:
// by its *Error's code (the client wraps typed details such as
// *StreamRevisionConflictError in an *Error of the matching code), else by
// the gRPC status it carries.
func sentinelOf(err error) error {
	if kerr, ok := errors.AsType[*kurrentdb.Error](err); ok {
		if s := sentinelFor(kerr.Code()); s != nil {
			return s
		}
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return eventstore.ErrUnavailable
	case codes.NotFound:
		return eventstore.ErrNotFound
	case codes.ResourceExhausted:
		return eventstore.ErrTooLarge
	}
	return nil
}

// translate wraps a client error with what was being done and, where one
// fits, the store sentinel, so callers can use errors.Is. A context error
// of the caller is returned as that, not as an unavailable store.
func translate(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	if s := sentinelOf(err); s != nil {
		return fmt.Errorf("%s: %w: %w", what, s, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// conflictStream names the stream a multi-stream append conflicted on, ""
// when the error does not say.
func conflictStream(err error) string {
	var conflict *kurrentdb.StreamRevisionConflictError
	if errors.As(err, &conflict) {
		return conflict.Stream
	}
	return ""
}
