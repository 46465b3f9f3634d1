package httpapi

import (
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the HTTP request metrics of one process.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

// NewMetrics registers the HTTP metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_http_requests_total",
			Help: "HTTP requests by engine, route, method and status.",
		}, []string{"engine", "route", "method", "status"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "activityhistory_http_request_duration_seconds",
			Help:    "HTTP request latency by engine, route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"engine", "route", "method"}),
		inflight: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "activityhistory_http_requests_in_flight",
			Help: "HTTP requests being served, by engine.",
		}, []string{"engine"}),
	}
}

// Middleware records every request of engine.
func (m *Metrics) Middleware(engine string) gin.HandlerFunc {
	inflight := m.inflight.WithLabelValues(engine)
	var series sync.Map // seriesKey → *requestSeries: no label hashing per request
	return func(c *gin.Context) {
		start := time.Now()
		inflight.Inc()
		defer inflight.Dec()
		c.Next()
		route := c.FullPath()
		if route == "" {
			// Unmatched paths share one label so clients cannot grow the series.
			route = "unmatched"
		}
		k := seriesKey{route: route, method: Method(c), status: c.Writer.Status()}
		s, ok := series.Load(k)
		if !ok {
			s, _ = series.LoadOrStore(k, &requestSeries{
				requests: m.requests.WithLabelValues(engine, k.route, k.method, strconv.Itoa(k.status)),
				duration: m.duration.WithLabelValues(engine, k.route, k.method),
			})
		}
		rs := s.(*requestSeries)
		rs.requests.Inc()
		rs.duration.Observe(time.Since(start).Seconds())
	}
}

// seriesKey names the series of one kind of request; the routes, methods
// and statuses a server answers with are few.
type seriesKey struct {
	route, method string
	status        int
}

type requestSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}
