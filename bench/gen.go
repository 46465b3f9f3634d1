package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
)

// apiPath is the service's history route.
const apiPath = "/api/v1/activityHistory"

// payloads are person-record-like objects of about 250 bytes.
var payloads = func() []json.RawMessage {
	var out []json.RawMessage
	for i, name := range []string{"Amara Okafor", "John Smith", "Priya Patel", "Wojciech Nowak"} {
		b, _ := json.Marshal(map[string]any{
			"fullName": name, "dateOfBirth": fmt.Sprintf("19%02d-0%d-1%d", 50+i*7, 1+i, i),
			"email":     fmt.Sprintf("person%d@example.org", i),
			"address":   map[string]string{"line1": strconv.Itoa(10+i) + " Mare Street", "town": "London", "postCode": "E8 3RH"},
			"tenureRef": fmt.Sprintf("TEN-%07d", 1000+i), "notes": "contact preference changed after a visit",
		})
		out = append(out, b)
	}
	return out
}()

func newActivity(target string, at time.Time, i int) activity.Activity {
	return activity.Activity{
		ID: uuid.NewString(), TargetID: target, Type: activity.TypeUpdate, TargetType: "person",
		CreatedAt: at.UTC(), OldData: payloads[i%len(payloads)], NewData: payloads[(i+1)%len(payloads)],
		AuthorDetails: activity.Author{FullName: "Bench", Email: "bench@example.org"},
		SourceDomain:  "Person",
	}
}

// body is the JSON of one activity, or of an array when len(acts) > 1.
func body(acts []activity.Activity) []byte {
	var b []byte
	if len(acts) == 1 {
		b, _ = json.Marshal(acts[0])
	} else {
		b, _ = json.Marshal(acts)
	}
	return b
}

// postBodies returns the i-th request of a POST run: per activities over
// the targets picked by pick(i, k), each new and stamped now.
func postBodies(base string, per int, pick func(i, k int) string) func(i int) request {
	return func(i int) request {
		acts := make([]activity.Activity, per)
		now := time.Now()
		for k := range acts {
			acts[k] = newActivity(pick(i, k), now, i+k)
		}
		return request{method: http.MethodPost, url: base + apiPath, body: body(acts)}
	}
}

func pageURL(base, target, token string, size int) string {
	q := url.Values{"targetId": {target}, "pageSize": {strconv.Itoa(size)}}
	if token != "" {
		q.Set("paginationToken", token)
	}
	return base + apiPath + "?" + q.Encode()
}

// client is the bench's own HTTP client, for preloading and probing only:
// the measured runs use vegeta.
type client struct {
	http  *http.Client
	token string
}

func newClient(token string, conns int) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = conns
	return &client{http: &http.Client{Transport: tr, Timeout: time.Minute}, token: token}
}

func (c *client) do(ctx context.Context, method, u string, b []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if b != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// preload records n activities of target with createdAt 1 ms apart, in
// arrays of batch from 4 clients. It returns the bytes of the recorded
// activities' JSON as the service returned them (its stored form), the
// sort key of the activity below which the deep page starts, and the
// ingest rate.
func preload(ctx context.Context, c *client, base, target string, n, batch int) (jsonBytes int64, deepKey string, rate float64, err error) {
	start := time.Now()
	t0 := start.Add(-time.Duration(n)*time.Millisecond - time.Hour).Truncate(time.Millisecond)
	deepAt := n - n/2 // n/2 - 1 activities are newer than it
	var (
		next  atomic.Int64
		size  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	batches := (n + batch - 1) / batch
	for range 4 {
		wg.Go(func() {
			for {
				b := int(next.Add(1) - 1)
				if b >= batches || ctx.Err() != nil {
					return
				}
				acts := make([]activity.Activity, 0, batch)
				for i := b * batch; i < min(n, (b+1)*batch); i++ {
					a := newActivity(target, t0.Add(time.Duration(i)*time.Millisecond), i)
					if i == deepAt {
						mu.Lock()
						deepKey = a.SortKey()
						mu.Unlock()
					}
					acts = append(acts, a)
				}
				status, out, err := c.postRetrying(ctx, base+apiPath, body(acts))
				var got []json.RawMessage
				// 200: the service found the array already recorded (its
				// own retry of an append that had succeeded).
				if err == nil && status != http.StatusCreated && status != http.StatusOK {
					err = fmt.Errorf("preload: status %d: %.300s", status, out)
				}
				if err == nil {
					err = json.Unmarshal(out, &got)
				}
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					next.Store(int64(batches))
					return
				}
				for _, g := range got {
					size.Add(int64(len(g)))
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, "", 0, first
	}
	return size.Load(), deepKey, float64(n) / time.Since(start).Seconds(), nil
}

// postRetrying posts b, and again after a 503 (the service's answer when
// its store was slower than its deadline), as a client of it would: the
// same ids make the retry safe.
func (c *client) postRetrying(ctx context.Context, u string, b []byte) (int, []byte, error) {
	for try := 1; ; try++ {
		status, out, err := c.do(ctx, http.MethodPost, u, b)
		if err != nil || status != http.StatusServiceUnavailable || try == 20 {
			return status, out, err
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
