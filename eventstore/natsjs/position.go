package natsjs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/textproto"
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
	m, _, err := s.leaderGet(ctx, s.cfg.Stream, directReq{LastFor: s.evAll})
	if err != nil {
		return 0, fmt.Errorf("last position: %w", err)
	}
	return m.seq, nil
}

// leaderGet gets one message through the stream leader (the message get
// API, not direct get, which any replica answers and may answer from
// behind). ok is false when no message matches. It waits out an election.
func (s *Store) leaderGet(ctx context.Context, stream string, req directReq) (m rawMsg, ok bool, err error) {
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
	hdr, err := parseHeader(r.Message.Header)
	if err != nil {
		return rawMsg{}, false, fmt.Errorf("message get %d: %w", r.Message.Sequence, err)
	}
	return rawMsg{subject: r.Message.Subject, seq: r.Message.Sequence, time: r.Message.Time.UTC(), header: hdr, data: r.Message.Data}, true, nil
}

// parseHeader reads a NATS header block ("NATS/1.0\r\nKey: value\r\n\r\n").
func parseHeader(b []byte) (nats.Header, error) {
	if len(b) == 0 {
		return nats.Header{}, nil
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	if _, err := tp.ReadLine(); err != nil { // the status line
		return nil, err
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return nats.Header(h), nil
}
