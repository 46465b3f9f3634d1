package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// row is one figure of the table.
type row struct {
	figure, target, service, raw, peer string
}

type table struct {
	rows []row
}

func (t *table) add(figure, target, service string, raw, peer cell) {
	t.rows = append(t.rows, row{figure, target, service, raw.String(), peer.String()})
}

// cell is a raw part's figure or why it is missing.
type cell struct {
	rate rawRate
	err  error
	text string
}

func (c cell) String() string {
	switch {
	case c.err != nil:
		return "not measured: " + c.err.Error()
	case c.text != "":
		return c.text
	case c.rate.unit == "":
		return "–"
	}
	return c.rate.String()
}

func measured(x rawRate, err error) cell { return cell{rate: x, err: err} }

func text(s string) cell { return cell{text: s} }

func (t *table) write(w io.Writer, notes []string) {
	fmt.Fprintln(w, "| figure | target | service (vegeta over HTTP) | raw part, same run | PostgreSQL peer, same run |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.figure, r.target, r.service, r.raw, r.peer)
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

// httpFigure is a vegeta result as the table shows it.
func httpFigure(res result, perReq int) string {
	var s string
	if perReq > 1 {
		s = fmt.Sprintf("%s activities/s (%s req/s), p50 %s, p99 %s",
			thousands(res.Throughput*float64(perReq)), thousands(res.Throughput), ms(res.p50()), ms(res.p99()))
	} else {
		s = fmt.Sprintf("%s req/s, p50 %s, p99 %s", thousands(res.Throughput), ms(res.p50()), ms(res.p99()))
	}
	if f := res.failed(); f > 0 {
		s += fmt.Sprintf(" (%d of %d failed: %v)", f, res.Requests, res.Status)
	}
	return s
}

func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64) + " ms"
	case f < 1:
		return strconv.FormatFloat(f, 'f', 2, 64) + " ms"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " ms"
}

func mb(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 0, 64) + " MB" }

// thousands formats a rate with thousands separators.
func thousands(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
