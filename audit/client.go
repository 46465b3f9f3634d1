package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/council/activityhistory/eventstore"
)

// Client replays and verifies streams through the HTTP API, trusting
// nothing the server says about them: it recomputes every hash itself.
type Client struct {
	// BaseURL is the service's address, e.g. https://ah.example.org.
	BaseURL string
	// Token is the bearer token of an audit group member.
	Token string
	// HTTP is the client to use; nil means one with a 30 s timeout.
	HTTP *http.Client
	// PageSize of each replay request; 0 means MaxReplayPageSize.
	PageSize int
}

// HTTPError is an answer other than 200 and 404.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// ErrStreamNotFound: the server has no stream for the target.
var ErrStreamNotFound = errors.New("no stream for this target")

// WireRecord is a record as the replay endpoint sends it.
type WireRecord struct {
	Revision   uint64          `json:"revision"`
	Position   uint64          `json:"position"`
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	RecordedAt time.Time       `json:"recordedAt"`
	PrevHash   string          `json:"prevHash"`
	Hash       string          `json:"hash"`
	Chain      int             `json:"chain"`  // 0 from servers before chain forms: v1
	Digest     string          `json:"digest"` // of the payload, v2; what an erased record keeps
	Erased     bool            `json:"erased"`
	DataBase64 string          `json:"dataBase64"`
	Data       json.RawMessage `json:"data"`
}

type replayBody struct {
	TargetID          string       `json:"targetId"`
	Results           []WireRecord `json:"results"`
	PaginationDetails struct {
		NextToken *string `json:"nextToken"`
	} `json:"paginationDetails"`
}

// Record turns a replayed record into the record its hash covers: the
// data bytes are those of dataBase64, which must equal data's text. The
// digest the server sends is used only for an erased record; for the
// others it is recomputed from the data.
func (w WireRecord) Record(stream string) (eventstore.Record, error) {
	if w.Erased {
		if w.DataBase64 != "" || !bytes.Equal(w.Data, []byte("null")) && len(w.Data) > 0 {
			return eventstore.Record{}, fmt.Errorf("revision %d: erased, yet it carries data", w.Revision)
		}
		return eventstore.Record{ID: w.ID, Type: w.Type, Stream: stream, Revision: w.Revision, Position: w.Position,
			RecordedAt: w.RecordedAt, PrevHash: w.PrevHash, Hash: w.Hash, Version: w.Chain, Digest: w.Digest, Erased: true}, nil
	}
	data, err := base64.StdEncoding.DecodeString(w.DataBase64)
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("revision %d: dataBase64: %w", w.Revision, err)
	}
	if !bytes.Equal(w.Data, []byte("null")) && !bytes.Equal(w.Data, data) {
		return eventstore.Record{}, fmt.Errorf("revision %d: data differs from dataBase64", w.Revision)
	}
	return eventstore.Record{ID: w.ID, Type: w.Type, Stream: stream, Revision: w.Revision, Position: w.Position,
		RecordedAt: w.RecordedAt, Data: data, PrevHash: w.PrevHash, Hash: w.Hash, Version: w.Chain}, nil
}

// Replay calls fn with each page of target's records from revision from,
// oldest first, as the server sends them (not yet verified). The stream
// name fn gets is the target id the server answered with, which must be
// the one asked for (any case).
func (c *Client) Replay(ctx context.Context, target string, from uint64, fn func(stream string, page []WireRecord) error) error {
	size := c.PageSize
	if size <= 0 {
		size = MaxReplayPageSize
	}
	q := url.Values{"fromRevision": {strconv.FormatUint(from, 10)}, "pageSize": {strconv.Itoa(size)}}
	for {
		var body replayBody
		err := c.get(ctx, "/api/v1/activityHistory/streams/"+url.PathEscape(target)+"/events?"+q.Encode(), &body)
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusConflict {
			// The server cannot serve the record that belongs next.
			return &eventstore.ChainError{Stream: target, Revision: from, Reason: "the server says: " + he.Message}
		}
		if err != nil {
			return err
		}
		if !strings.EqualFold(body.TargetID, target) {
			return fmt.Errorf("the server answered for target %q, not %q", body.TargetID, target)
		}
		if len(body.Results) > 0 && body.Results[0].Revision != from {
			// Each page must go on where the last one ended, or a server
			// could send pages in a loop.
			return &eventstore.ChainError{Stream: target, Revision: from,
				Reason: fmt.Sprintf("the server's page starts at revision %d", body.Results[0].Revision)}
		}
		if err := fn(body.TargetID, body.Results); err != nil {
			return err
		}
		next := body.PaginationDetails.NextToken
		if next == nil {
			return nil
		}
		if len(body.Results) == 0 {
			return errors.New("the server sent an empty page with a next token")
		}
		from = body.Results[len(body.Results)-1].Revision + 1
		q = url.Values{"pageSize": {strconv.Itoa(size)}, "paginationToken": {*next}}
	}
}

// RemoteResult is what VerifyRemote found.
type RemoteResult struct {
	Records uint64
	Head    *eventstore.Head // the last record; nil when the stream is empty
	Erased  []uint64         // revisions whose payloads were erased
}

// VerifyRemote replays target's whole stream and recomputes its chain
// with eventstore.Chain. expected, when not nil, is a head saved
// earlier: the stream must still hold that record (revision and hash), so
// a server that dropped or rewrote records since is caught. Failures are
// *eventstore.ChainError; a missing stream gives ErrStreamNotFound.
func (c *Client) VerifyRemote(ctx context.Context, target string, expected *eventstore.Head) (RemoteResult, error) {
	var res RemoteResult
	var chain *eventstore.Chain
	matched := expected == nil
	err := c.Replay(ctx, target, 0, func(stream string, page []WireRecord) error {
		if chain == nil {
			chain = &eventstore.Chain{Stream: stream}
		}
		recs := make([]eventstore.Record, len(page))
		for i, w := range page {
			r, err := w.Record(stream)
			if err != nil {
				return &eventstore.ChainError{Stream: stream, Revision: w.Revision, Reason: err.Error()}
			}
			recs[i] = r
		}
		if err := chain.Add(recs); err != nil {
			return err
		}
		res.Head = chain.Head
		if res.Head != nil {
			res.Records = res.Head.Revision + 1
		}
		for _, r := range recs {
			if expected != nil && r.Revision == expected.Revision {
				if r.Hash != expected.Hash {
					return &eventstore.ChainError{Stream: stream, Revision: r.Revision,
						Reason: fmt.Sprintf("record hash %s differs from the expected head %s", r.Hash, expected.Hash)}
				}
				matched = true
			}
		}
		return nil
	})
	if err == nil && chain != nil {
		err = chain.End()
		res.Erased = chain.Erased
	}
	if err != nil {
		return res, err
	}
	if !matched {
		have := "no records"
		if res.Head != nil {
			have = fmt.Sprintf("records up to revision %d", res.Head.Revision)
		}
		return res, &eventstore.ChainError{Stream: target, Revision: res.Records,
			Reason: fmt.Sprintf("the head moved backwards: the server serves %s, the expected head is at revision %d", have, expected.Revision)}
	}
	return res, nil
}

// Erase asks the service to erase the payloads of target's records (all
// of them when ids is empty).
func (c *Client) Erase(ctx context.Context, target string, ids []string, reason string) (EraseResult, error) {
	body, err := json.Marshal(eraseBody{IDs: ids, Reason: reason})
	if err != nil {
		return EraseResult{}, err
	}
	var out struct {
		TargetID      string                    `json:"targetId"`
		ErasedRecords []eventstore.ErasedRecord `json:"erasedRecords"`
		AlreadyErased int                       `json:"alreadyErased"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/activityHistory/streams/"+url.PathEscape(target)+"/erase", body, &out); err != nil {
		return EraseResult{}, err
	}
	return EraseResult{TargetID: out.TargetID, Erased: out.ErasedRecords, Already: out.AlreadyErased}, nil
}

// ParseHead reads a head given as REVISION:HASH.
func ParseHead(s string) (*eventstore.Head, error) {
	rev, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(rev, 10, 64)
	if !ok || err != nil || len(hash) != 64 || strings.Trim(strings.ToLower(hash), "0123456789abcdef") != "" {
		return nil, fmt.Errorf("head %q: want REVISION:HASH, such as 41:%s", s, strings.Repeat("ab", 32))
	}
	return &eventstore.Head{Revision: n, Hash: strings.ToLower(hash)}, nil
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	return c.do(ctx, http.MethodGet, path, nil, into)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, ErrStreamNotFound)
	case resp.StatusCode != http.StatusOK:
		var e struct {
			Message string
			Errors  map[string][]string
		}
		_ = json.Unmarshal(respBody, &e)
		if len(e.Errors) > 0 {
			e.Message = fmt.Sprintf("%s %v", e.Message, e.Errors)
		}
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, &HTTPError{Status: resp.StatusCode, Message: e.Message})
	}
	if err := json.Unmarshal(respBody, into); err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	return nil
}
