package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/council/activityhistory/eventstore"
)

func TestSentinelForCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code kurrentdb.ErrorCode
		want error
	}{
		{kurrentdb.ErrorCodeWrongExpectedVersion, eventstore.ErrConflict},
		{kurrentdb.ErrorCodeStreamRevisionConflict, eventstore.ErrConflict},
		{kurrentdb.ErrorCodeAppendConsistencyViolation, eventstore.ErrConflict},
		{kurrentdb.ErrorCodeResourceNotFound, eventstore.ErrNotFound},
		{kurrentdb.ErrorCodeStreamDeleted, eventstore.ErrNotFound},
		{kurrentdb.ErrorCodeStreamTombstoned, eventstore.ErrNotFound},
		{kurrentdb.ErrorCodeAppendRecordSizeExceeded, eventstore.ErrTooLarge},
		{kurrentdb.ErrorCodeAppendTransactionSizeExceeded, eventstore.ErrTooLarge},
		{kurrentdb.ErrorUnavailable, eventstore.ErrUnavailable},
		{kurrentdb.ErrorCodeNotLeader, eventstore.ErrUnavailable},
		{kurrentdb.ErrorCodeDeadlineExceeded, eventstore.ErrUnavailable},
		{kurrentdb.ErrorCodeConnectionClosed, eventstore.ErrUnavailable},
		{kurrentdb.ErrorCodeAccessDenied, nil},
		{kurrentdb.ErrorCodeUnauthenticated, nil},
		{kurrentdb.ErrorCodeUnknown, nil},
	}
	for _, tt := range tests {
		if got := sentinelFor(tt.code); got != tt.want {
			t.Errorf("code %d: got %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"message too large", status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), eventstore.ErrTooLarge},
		{"grpc unavailable", status.Error(codes.Unavailable, "connection refused"), eventstore.ErrUnavailable},
		{"grpc unavailable in a client error", func() error { e, _ := kurrentdb.FromError(status.Error(codes.Unavailable, "x")); return e }(), eventstore.ErrUnavailable},
		{"grpc not found", status.Error(codes.NotFound, "stream"), eventstore.ErrNotFound},
		{"other invalid argument", status.Error(codes.InvalidArgument, "bad"), nil},
		{"plain", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := translate(context.Background(), "append t-1", tt.err)
			if !errors.Is(got, tt.err) && !errors.Is(got, errors.Unwrap(tt.err)) {
				t.Errorf("translated error %v lost the client error %v", got, tt.err)
			}
			for _, s := range []error{eventstore.ErrConflict, eventstore.ErrNotFound, eventstore.ErrTooLarge, eventstore.ErrUnavailable} {
				if errors.Is(got, s) != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", got, s, errors.Is(got, s), s == tt.want)
				}
			}
		})
	}
	if translate(context.Background(), "x", nil) != nil {
		t.Error("nil error translated to non-nil")
	}
}

func TestTranslateCallerCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := translate(ctx, "read", status.Error(codes.Unavailable, "cancelled"))
	if !errors.Is(got, context.Canceled) || errors.Is(got, eventstore.ErrUnavailable) {
		t.Errorf("got %v, want the caller's context error, not an unavailable store", got)
	}
}

func TestConflictStream(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("x: %w", &kurrentdb.StreamRevisionConflictError{Stream: "activity~id-ab"})
	if got := conflictStream(err); got != "activity~id-ab" {
		t.Errorf("got %q", got)
	}
	if got := conflictStream(io.EOF); got != "" {
		t.Errorf("got %q for an error without details", got)
	}
}
