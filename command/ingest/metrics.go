package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the ingest consumer's.
type Metrics struct {
	messages   *prometheus.CounterVec
	warnings   *prometheus.CounterVec
	latency    prometheus.Histogram
	pending    prometheus.Gauge
	ackPending prometheus.Gauge
}

// NewMetrics registers the ingest metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_ingest_messages_total",
			Help: "Entity event messages handled, by result: recorded, duplicate, ignored, dead_lettered, retried.",
		}, []string{"result"}),
		warnings: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_ingest_warnings_total",
			Help: "Entity events recorded with a warning, e.g. missing_user (authorDetails recorded as nulls).",
		}, []string{"warning"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "activityhistory_ingest_handling_seconds",
			Help:    "Time from receiving an entity event message to settling it (ack, dead letter or nak).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "activityhistory_ingest_pending_messages",
			Help: "Messages of the entity events stream not yet delivered to the consumer (lag).",
		}),
		ackPending: f.NewGauge(prometheus.GaugeOpts{
			Name: "activityhistory_ingest_ack_pending_messages",
			Help: "Messages delivered to the consumer and not yet acknowledged.",
		}),
	}
	for _, r := range []Result{Recorded, Duplicate, Ignored, DeadLettered, Retried} {
		m.messages.WithLabelValues(string(r))
	}
	m.warnings.WithLabelValues(WarningMissingUser)
	return m
}

func (m *Metrics) observe(out Outcome, d time.Duration) {
	m.messages.WithLabelValues(string(out.Result)).Inc()
	m.latency.Observe(d.Seconds())
	if out.Result == Recorded {
		for _, w := range out.Translation.Warnings {
			m.warnings.WithLabelValues(w).Inc()
		}
	}
}
