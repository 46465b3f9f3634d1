package main

import (
	"context"
	"encoding/json"

	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/command/ingest"
)

const dlqUsage = `Usage:
  activityhistory dlq list   [--reason R] [flags]
  activityhistory dlq replay (--all [--reason R] | --seq N[,N…]) [flags]

list prints the dead letters of INGEST_DLQ_STREAM; replay re-processes them
through the current mapping (built-in + INGEST_MAPPING_FILE) and removes
each one that is recorded or ignored now. With the embedded event store,
stop the service first, or point EVENTSTORE_URL at its NATS_LISTEN address.
`

func dlq(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprint(stderr, dlqUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage); fs.PrintDefaults() }
	e := &envFlags{fs: fs, getenv: getenv}
	var cfg config
	var reason, seqs string
	var all bool
	fs.StringVar(&reason, "reason", "", "only dead letters of this reason: "+strings.Join(ingest.Reasons, ", "))
	if sub == "replay" {
		fs.BoolVar(&all, "all", false, "replay every dead letter (of --reason, when given)")
		fs.StringVar(&seqs, "seq", "", "replay these dead-letter sequence numbers, comma-separated")
	}
	e.str(&cfg.DataDir, "data-dir", "DATA_DIR", "./data", "data directory of the embedded event store")
	e.str(&cfg.EventStoreURL, "eventstore-url", "EVENTSTORE_URL", "", "event store URL (empty = embedded)")
	e.str(&cfg.TargetIDFormat, "target-id-format", "TARGET_ID_FORMAT", "uuid", "targetId format: uuid or opaque")
	e.list(&cfg.ExtraTargetTypes, "extra-target-types", "ACTIVITY_EXTRA_TARGET_TYPES", "", "target types accepted besides the built-in ones")
	cfg.ingestConfig.flags(e, false)
	cfg.EventStoreSync, cfg.EventStoreRepl, cfg.LogLevel, cfg.LogFormat = "default", 1, "warn", "text"
	if err := e.parse(args[1:]); err != nil {
		return err
	}
	if sub == "replay" && all == (seqs != "") {
		fmt.Fprintln(stderr, "dlq replay: give exactly one of --all or --seq")
		return errUsage
	}
	if sub == "replay" && seqs != "" && reason != "" {
		fmt.Fprintln(stderr, "dlq replay: --reason goes with --all")
		return errUsage
	}
	validator, err := activity.NewValidator(activity.Rules{
		TargetIDFormat:   activity.TargetIDFormat(cfg.TargetIDFormat),
		ExtraTargetTypes: targetTypes(cfg.ExtraTargetTypes),
	})
	if err != nil {
		return fmt.Errorf("TARGET_ID_FORMAT: %w", err)
	}
	translator, err := newTranslator(cfg, validator)
	if err != nil {
		return err
	}

	log := newLogger(cfg, stderr)
	s, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	nc, closeConn, err := natsConn(cfg, s, log)
	if err != nil {
		return err
	}
	if closeConn != nil {
		defer closeConn()
	}
	q, err := ingest.NewDLQ(nc, cfg.IngestDLQStream)
	if err != nil {
		return err
	}

	var letters []ingest.DeadLetter
	if seqs != "" {
		for _, f := range splitList(seqs) {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: --seq %q: want sequence numbers", errUsage, f)
			}
			dl, err := q.Get(ctx, n)
			if err != nil {
				return err
			}
			letters = append(letters, dl)
		}
	} else if letters, err = q.List(ctx, reason); err != nil {
		return err
	}

	if sub == "list" {
		printDeadLetters(stdout, letters)
		fmt.Fprintf(stderr, "%d dead letters in %s\n", len(letters), cfg.IngestDLQStream)
		return nil
	}
	proc := ingest.NewProcessor(translator, command.NewService(s, validator, command.Options{}))
	failing := 0
	counts := map[ingest.Result]int{}
	err = q.Replay(ctx, proc, letters, func(dl ingest.DeadLetter, out ingest.Outcome) {
		counts[out.Result]++
		switch out.Result {
		case ingest.DeadLettered:
			failing++
			fmt.Fprintf(stdout, "seq %d: still fails, kept: %v\n", dl.Seq, out.Rejection)
		case ingest.Ignored:
			fmt.Fprintf(stdout, "seq %d: ignored by the mapping, removed\n", dl.Seq)
		default:
			fmt.Fprintf(stdout, "seq %d: %s as activity %s, removed\n", dl.Seq, out.Result, out.Translation.Activity.ID)
		}
	})
	fmt.Fprintf(stderr, "replayed %d: %d recorded, %d already recorded, %d ignored, %d still failing\n",
		counts[ingest.Recorded]+counts[ingest.Duplicate]+counts[ingest.Ignored]+failing,
		counts[ingest.Recorded], counts[ingest.Duplicate], counts[ingest.Ignored], failing)
	if err != nil {
		return err
	}
	if failing > 0 {
		return fmt.Errorf("%d dead letters still fail; fix the mapping (INGEST_MAPPING_FILE) or the publisher", failing)
	}
	return nil
}

func printDeadLetters(w io.Writer, letters []ingest.DeadLetter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tREASON\tSUBJECT\tSTREAM-SEQ\tDELIVERIES\tEVENT-TYPE\tEVENT-ID\tDETAIL")
	for _, dl := range letters {
		var ev struct {
			ID        any `json:"id"`
			EventType any `json:"eventType"`
		}
		_ = json.Unmarshal(dl.Data, &ev)
		at := "-"
		if !dl.At.IsZero() {
			at = dl.At.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%v\t%v\t%s\n", dl.Seq, at, dl.Reason, dl.OriginalSubject,
			dl.StreamSequence, dl.DeliveryCount, orDash(ev.EventType), orDash(ev.ID), dl.Detail)
	}
	tw.Flush()
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}
