package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// codeNoMessage is JetStream's "no message found" (JSNoMessageFoundErr).
const codeNoMessage = 10037

// LastPosition returns the global position of the last event record, 0
// when there is none. It asks the stream leader, so on a cluster it is not
// behind anything acknowledged before the call. The file store finds the
// last message on a wildcard by walking its subject index: fine once in a
// while (start-up, audits), not per request.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	m, _, err := s.get(ctx, s.cfg.Stream, directReq{LastFor: s.evAll}, true)
	if err != nil {
		return 0, fmt.Errorf("last position: %w", err)
	}
	return m.seq, nil
}

// get gets one message of a JetStream stream; ok is false when no message
// matches. Any replica answers a direct get, perhaps from behind; with
// leader the stream leader answers (the message get API), and an election
// is waited out.
func (s *Store) get(ctx context.Context, stream string, req directReq, leader bool) (m rawMsg, ok bool, err error) {
	if !leader {
		msgs, _, err := s.direct(ctx, stream, req)
		if err != nil || len(msgs) == 0 {
			return rawMsg{}, false, err
		}
		return msgs[0], true, nil
	}
	err = s.retryUnavailable(ctx, func() error {
		m, ok, err = s.leaderGetOnce(ctx, stream, req)
		return err
	})
	return m, ok, err
}

func (s *Store) leaderGetOnce(ctx context.Context, stream string, req directReq) (rawMsg, bool, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return rawMsg{}, false, err
	}
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	resp, err := s.nc.RequestWithContext(actx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return rawMsg{}, false, backendErr(ctx, err)
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return rawMsg{}, false, fmt.Errorf("message get: %w", err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == codeNoMessage:
		return rawMsg{}, false, nil
	case r.Error != nil:
		return rawMsg{}, false, fmt.Errorf("message get: %w", backendErr(ctx, r.Error))
	case r.Message == nil:
		return rawMsg{}, false, errors.New("message get: empty answer")
	}
	hdr := nats.Header{}
	if len(r.Message.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return rawMsg{}, false, fmt.Errorf("message get %d: %w", r.Message.Sequence, err)
		}
	}
	return rawMsg{subject: r.Message.Subject, seq: r.Message.Sequence, time: r.Message.Time.UTC(), header: hdr, data: r.Message.Data}, true, nil
}
