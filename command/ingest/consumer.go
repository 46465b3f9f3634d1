package ingest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultStream    = "ENTITY_EVENTS"
	DefaultSubjects  = "entityevents.>"
	DefaultDLQStream = "ENTITY_EVENTS_DLQ"
	// Durable is the name of the consumer every command process shares,
	// and of its priority group.
	Durable              = "activityhistory"
	DefaultAckWait       = 15 * time.Second
	DefaultMaxAckPending = 256
	DefaultWorkers       = 32
	// maxBackoff caps the delay of a negative acknowledgement.
	maxBackoff  = 30 * time.Second
	baseBackoff = 250 * time.Millisecond
)

// Dead-letter headers.
const (
	HeaderReason         = "DLQ-Reason"
	HeaderDetail         = "DLQ-Detail"
	HeaderOriginalStream = "DLQ-Original-Stream"
	HeaderOriginalSubj   = "DLQ-Original-Subject"
	HeaderStreamSequence = "DLQ-Stream-Sequence"
	HeaderDeliveryCount  = "DLQ-Delivery-Count"
	HeaderDeadLetteredAt = "DLQ-Dead-Lettered-At"
)

// Config configures a Consumer.
type Config struct {
	// Stream holds the entity events; created with Subjects when missing.
	Stream   string
	Subjects []string
	// DLQStream receives dead letters on <DLQStream>.<reason>; created
	// when missing.
	DLQStream string
	// AckWait: a message not acknowledged by then is delivered again (a
	// consumer that died while handling it). A standby process takes the
	// consumer over 1.25 AckWait after the active one went silent: by
	// then every message the silent one held is due again, and is
	// delivered before newer ones, so each entity's order holds.
	AckWait       time.Duration
	MaxAckPending int
	// Workers handle messages in parallel, each entity's in one worker.
	Workers    int
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// beforeAck runs after an event is handled, before its ack (tests).
	beforeAck func(Outcome)
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if len(c.Subjects) == 0 {
		c.Subjects = []string{DefaultSubjects}
	}
	if c.DLQStream == "" {
		c.DLQStream = DefaultDLQStream
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
}

// Consumer consumes entity events from JetStream through the durable
// consumer Durable. Every process running one shares it: the consumer is
// pinned to one of them at a time (the others stand by and take over
// when it goes silent; see Config.AckWait), so each message is handled
// once and each entity's events are recorded in stream order.
type Consumer struct {
	cfg     Config
	js      jetstream.JetStream
	proc    *Processor
	log     *slog.Logger
	metrics *Metrics
	order   *entityOrder
}

// NewConsumer returns a Consumer on the NATS connection nc.
func NewConsumer(nc *nats.Conn, proc *Processor, cfg Config) (*Consumer, error) {
	cfg.defaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return &Consumer{
		cfg: cfg, js: js, proc: proc, log: cfg.Logger,
		metrics: NewMetrics(cfg.Registerer),
		order:   &entityOrder{held: map[string][]held{}, maxAge: 2*maxBackoff + cfg.AckWait},
	}, nil
}

// Setup creates the streams when missing and creates or updates the
// durable consumer.
func (c *Consumer) Setup(ctx context.Context) (jetstream.Consumer, error) {
	if err := ensureStream(ctx, c.js, c.cfg.Stream, c.cfg.Subjects); err != nil {
		return nil, err
	}
	if err := ensureStream(ctx, c.js, c.cfg.DLQStream, []string{c.cfg.DLQStream + ".>"}); err != nil {
		return nil, err
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        Durable,
		Description:    "Activity History: entity events to activities",
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		MaxDeliver:     -1, // never dropped: what cannot be handled is dead-lettered by us
		MaxAckPending:  c.cfg.MaxAckPending,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{Durable},
		PinnedTTL:      c.pinnedTTL(),
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: consumer %s on %s: %w", Durable, c.cfg.Stream, err)
	}
	return cons, nil
}

func (c *Consumer) pinnedTTL() time.Duration { return c.cfg.AckWait + c.cfg.AckWait/4 }

// ensureStream creates a stream that does not exist; one that does is
// left as its operator configured it.
func ensureStream(ctx context.Context, js jetstream.JetStream, name string, subjects []string) error {
	_, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: subjects, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, Duplicates: 2 * time.Minute,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("ingest: stream %s: %w", name, err)
	}
	return nil
}

type job struct {
	msg         jetstream.Msg
	entity      string
	seq         uint64 // in the stream
	redelivered bool
	start       time.Time
}

// Run consumes until ctx ends. Messages received but not yet handled are
// then left alone, neither acknowledged nor given back: they are due
// again after AckWait, in stream order, before the process taking over
// (after 1.25 AckWait) gets anything newer. Giving them back at once
// would let them race newer ones.
func (c *Consumer) Run(ctx context.Context) error {
	cons, err := c.Setup(ctx)
	if err != nil {
		return err
	}
	// Every channel has room for every message the server lets us hold,
	// so the callback never blocks: a process that stops pulling loses
	// the pin while it still holds messages.
	in := make(chan job, c.cfg.MaxAckPending)
	lanes := make([]chan job, c.cfg.Workers)
	var workers sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan job, c.cfg.MaxAckPending)
		workers.Go(func() {
			for j := range lanes[i] {
				if ctx.Err() != nil {
					continue // left to AckWait, see above
				}
				c.handle(j)
			}
		})
	}
	workers.Go(func() {
		sequence(in, func(j job) { lanes[laneOf(j.entity, len(lanes))] <- j }, c.cfg.MaxAckPending)
		for _, l := range lanes {
			close(l)
		}
	})
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		j := job{msg: msg, entity: entityOf(msg.Data()), start: time.Now()}
		if md, err := msg.Metadata(); err == nil {
			j.seq, j.redelivered = md.Sequence.Stream, md.NumDelivered > 1
		}
		in <- j
	},
		jetstream.PullPriorityGroup(Durable),
		jetstream.PullMaxMessages(min(c.cfg.MaxAckPending, 256)),
		// Pull again well within the pin's TTL, also when nothing flows.
		jetstream.PullExpiry(max(time.Second, min(c.pinnedTTL()/4, 30*time.Second))),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrPinIDMismatch) && !errors.Is(err, nats.ErrTimeout) {
				c.log.Warn("ingest: consume", "err", err)
			}
		}))
	if err != nil {
		close(in)
		workers.Wait()
		return fmt.Errorf("ingest: consume %s: %w", c.cfg.Stream, err)
	}
	c.log.Info("ingest: consuming", "stream", c.cfg.Stream, "consumer", Durable, "dlq", c.cfg.DLQStream)

	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		c.pollPending(ctx, cons)
	}()
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	close(in)
	workers.Wait()
	<-pollDone
	return nil
}

// quietPeriod: redelivered messages are held until none has come for this
// long, then passed on in stream order.
const quietPeriod = 200 * time.Millisecond

// sequence passes jobs from in to out, putting redeliveries back in
// stream order: the server redelivers in the order messages became due,
// not in stream order, and after a hand-over every message the previous
// process held comes at once. While redeliveries are held, new messages
// wait behind them, so no entity's later event overtakes an earlier one.
func sequence(in <-chan job, out func(job), limit int) {
	var held []job
	quiet := time.NewTimer(time.Hour)
	defer quiet.Stop()
	flush := func() {
		slices.SortStableFunc(held, func(a, b job) int { return cmp.Compare(a.seq, b.seq) })
		for _, j := range held {
			out(j)
		}
		held = held[:0]
	}
	for {
		select {
		case j, ok := <-in:
			if !ok {
				flush()
				return
			}
			if !j.redelivered && len(held) == 0 {
				out(j)
				continue
			}
			held = append(held, j)
			if len(held) >= limit {
				flush()
				continue
			}
			quiet.Reset(quietPeriod)
		case <-quiet.C:
			flush()
		}
	}
}

// pollPending keeps the lag gauges current while no message arrives.
func (c *Consumer) pollPending(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if info, err := cons.Info(ictx); err == nil {
			c.metrics.pending.Set(float64(info.NumPending))
			c.metrics.ackPending.Set(float64(info.NumAckPending))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// errWaiting: an earlier event of the same entity is waiting for a retry.
var errWaiting = errors.New("an earlier event of this entity is waiting to be retried")

func (c *Consumer) handle(j job) {
	md, err := j.msg.Metadata()
	if err != nil {
		c.log.Error("ingest: message without JetStream metadata", "subject", j.msg.Subject(), "err", err)
		_ = j.msg.Term()
		return
	}
	seq := md.Sequence.Stream
	c.metrics.pending.Set(float64(md.NumPending))
	if c.order.blocked(j.entity, seq) {
		c.retry(j, md, errWaiting)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.AckWait*2/3)
	out := c.proc.Process(ctx, j.msg.Data())
	cancel()
	if out.Result == DeadLettered {
		if err := c.deadLetter(j.msg, md, out); err != nil {
			out = Outcome{Result: Retried, Translation: out.Translation, Err: err}
		}
	}
	if out.Result == Retried {
		c.retry(j, md, out.Err)
		return
	}
	if c.cfg.beforeAck != nil {
		c.cfg.beforeAck(out)
	}
	if err := j.msg.Ack(); err != nil {
		// Delivered again after AckWait; the append is idempotent.
		c.log.Warn("ingest: ack", "seq", seq, "err", err)
	}
	c.order.release(j.entity, seq)
	c.metrics.observe(out, time.Since(j.start))
	for _, w := range out.Translation.Warnings {
		if out.Result == Recorded {
			c.log.Warn("ingest: event recorded with a warning", "warning", w,
				"eventId", out.Translation.Event.ID, "eventType", out.Translation.Event.EventType)
		}
	}
}

// retry negatively acknowledges with a delay growing with the deliveries,
// and holds the entity's later events back until this one is handled.
func (c *Consumer) retry(j job, md *jetstream.MsgMetadata, cause error) {
	c.order.hold(j.entity, md.Sequence.Stream)
	delay := backoff(md.NumDelivered)
	if err := j.msg.NakWithDelay(delay); err != nil {
		c.log.Warn("ingest: nak", "seq", md.Sequence.Stream, "err", err)
	}
	c.metrics.observe(Outcome{Result: Retried}, time.Since(j.start))
	if !errors.Is(cause, errWaiting) {
		c.log.Warn("ingest: event not recorded; will retry", "seq", md.Sequence.Stream,
			"deliveries", md.NumDelivered, "retryIn", delay.String(), "err", cause)
	}
}

func backoff(deliveries uint64) time.Duration {
	d := baseBackoff
	for i := uint64(1); i < deliveries && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// deadLetter publishes the message to the DLQ stream with why, and logs it.
func (c *Consumer) deadLetter(msg jetstream.Msg, md *jetstream.MsgMetadata, out Outcome) error {
	dl := nats.NewMsg(c.cfg.DLQStream + "." + out.Rejection.Reason)
	dl.Data = msg.Data()
	dl.Header.Set(HeaderReason, out.Rejection.Reason)
	dl.Header.Set(HeaderDetail, out.Rejection.Error())
	dl.Header.Set(HeaderOriginalStream, md.Stream)
	dl.Header.Set(HeaderOriginalSubj, msg.Subject())
	dl.Header.Set(HeaderStreamSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	dl.Header.Set(HeaderDeliveryCount, strconv.FormatUint(md.NumDelivered, 10))
	dl.Header.Set(HeaderDeadLetteredAt, time.Now().UTC().Format(time.RFC3339Nano))
	// A second dead letter of the same message (its ack was lost) is
	// dropped by the DLQ stream.
	dl.Header.Set(jetstream.MsgIDHeader, md.Stream+":"+strconv.FormatUint(md.Sequence.Stream, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(ctx, dl); err != nil {
		return fmt.Errorf("dead-letter to %s: %w", c.cfg.DLQStream, err)
	}
	c.log.Warn("ingest: event dead-lettered", "reason", out.Rejection.Reason, "detail", out.Rejection.Error(),
		"subject", msg.Subject(), "seq", md.Sequence.Stream, "deliveries", md.NumDelivered,
		"eventId", out.Translation.Event.ID, "eventType", out.Translation.Event.EventType)
	return nil
}

// entityOf reads the entityId of an event, "" when it has none.
func entityOf(data []byte) string {
	var e struct {
		EntityID string `json:"entityId"`
	}
	_ = json.Unmarshal(data, &e)
	return e.EntityID
}

func laneOf(entity string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(entity))
	return int(h.Sum32() % uint32(n))
}

// entityOrder keeps an entity's events in stream order across retries: an
// event is held from the moment it is negatively acknowledged until it is
// handled, and a later event of the same entity waits while one is held.
type entityOrder struct {
	mu     sync.Mutex
	held   map[string][]held // stream sequences, ascending
	maxAge time.Duration     // a hold not renewed for this long is dropped
}

type held struct {
	seq uint64
	at  time.Time
}

func (o *entityOrder) blocked(entity string, seq uint64) bool {
	if entity == "" {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.held[entity]
	// A hold not renewed went to another process (a failover).
	for len(h) > 0 && time.Since(h[0].at) > o.maxAge {
		h = h[1:]
	}
	o.set(entity, h)
	return len(h) > 0 && seq > h[0].seq
}

func (o *entityOrder) hold(entity string, seq uint64) {
	if entity == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.held[entity]
	i := 0
	for i < len(h) && h[i].seq < seq {
		i++
	}
	if i < len(h) && h[i].seq == seq {
		h[i].at = time.Now()
		return
	}
	h = append(h, held{})
	copy(h[i+1:], h[i:])
	h[i] = held{seq: seq, at: time.Now()}
	o.held[entity] = h
}

func (o *entityOrder) release(entity string, seq uint64) {
	if entity == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.held[entity]
	for i := range h {
		if h[i].seq == seq {
			o.set(entity, append(h[:i], h[i+1:]...))
			return
		}
	}
}

func (o *entityOrder) set(entity string, h []held) {
	if len(h) == 0 {
		delete(o.held, entity)
		return
	}
	o.held[entity] = h
}
