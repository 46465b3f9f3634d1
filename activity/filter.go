package activity

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Filter narrows a history or an export. The zero Filter selects all.
type Filter struct {
	// From and To bound createdAt: From inclusive, To exclusive. Zero
	// leaves that side open.
	From, To time.Time
	// Types, SourceDomains and TargetTypes each select activities whose
	// field is one of the values; empty selects any.
	Types         []Type
	SourceDomains []string
	TargetTypes   []TargetType
}

// Limits of a filter taken from a request.
const (
	MaxFilterValues = 20
)

// earliestFilterYear and latestFilterYear keep bounds within the years the
// fixed-width sort key can spell.
const (
	earliestFilterYear = 1
	latestFilterYear   = 9999
)

// FilterInput is a filter as it arrives in a request, before checking.
// Each list may hold repeated values and comma-separated ones.
type FilterInput struct {
	From, To      string
	Types         []string
	SourceDomains []string
	TargetTypes   []string
}

// Filter checks in and returns the filter it describes, or a
// *ValidationError naming each bad field (from, to, type, sourceDomain,
// targetType). Values are split at commas, trimmed and de-duplicated.
func (v *Validator) Filter(in FilterInput) (Filter, error) {
	e := &ValidationError{}
	var f Filter
	f.From = parseBound(e, "from", in.From)
	f.To = parseBound(e, "to", in.To)
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		e.add("to", "must be after from")
	}
	for _, t := range values(e, "type", in.Types) {
		if !validType(Type(t)) {
			e.add("type", fmt.Sprintf("%q is not one of %s", t, joinTypes()))
			continue
		}
		f.Types = append(f.Types, Type(t))
	}
	for _, d := range values(e, "sourceDomain", in.SourceDomains) {
		if n := utf8.RuneCountInString(d); n > MaxSourceDomainLen {
			e.add("sourceDomain", fmt.Sprintf("a value is %d characters; at most %d are allowed", n, MaxSourceDomainLen))
			continue
		}
		f.SourceDomains = append(f.SourceDomains, d)
	}
	for _, t := range values(e, "targetType", in.TargetTypes) {
		if !v.targetTypes[TargetType(t)] {
			e.add("targetType", fmt.Sprintf("%q is not one of %s", t, v.joinTargetTypes()))
			continue
		}
		f.TargetTypes = append(f.TargetTypes, TargetType(t))
	}
	if err := e.orNil(); err != nil {
		return Filter{}, err
	}
	return f, nil
}

func parseBound(e *ValidationError, field, raw string) time.Time {
	if raw == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		e.add(field, "must be an RFC 3339 date-time such as 2021-02-19T15:12:00Z")
		return time.Time{}
	}
	if t = t.UTC(); t.Year() < earliestFilterYear || t.Year() > latestFilterYear {
		e.add(field, fmt.Sprintf("must be within the years %d to %d", earliestFilterYear, latestFilterYear))
		return time.Time{}
	}
	return t
}

// values splits comma lists, drops empty items and duplicates, and keeps
// the result sorted so that one filter has one canonical form.
func values(e *ValidationError, field string, raw []string) []string {
	var out []string
	for _, r := range raw {
		for v := range strings.SplitSeq(r, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			if !utf8.ValidString(v) {
				e.add(field, "must be UTF-8 text")
				return nil
			}
			out = append(out, v)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxFilterValues {
		e.add(field, fmt.Sprintf("has %d values; at most %d are allowed", len(out), MaxFilterValues))
		return nil
	}
	return out
}

// IsZero reports whether f selects everything.
func (f Filter) IsZero() bool {
	return f.From.IsZero() && f.To.IsZero() && len(f.Types) == 0 && len(f.SourceDomains) == 0 && len(f.TargetTypes) == 0
}

// Match reports whether a is selected by f.
func (f Filter) Match(a Activity) bool {
	return f.MatchTime(a.CreatedAt) && f.MatchFields(a.Type, a.SourceDomain) &&
		(len(f.TargetTypes) == 0 || slices.Contains(f.TargetTypes, a.TargetType))
}

// MatchTime reports whether createdAt is within [From, To).
func (f Filter) MatchTime(createdAt time.Time) bool {
	return (f.From.IsZero() || !createdAt.Before(f.From)) && (f.To.IsZero() || createdAt.Before(f.To))
}

// MatchFields reports whether an activity of type t from sourceDomain d is
// selected by Types and SourceDomains.
func (f Filter) MatchFields(t Type, d string) bool {
	return (len(f.Types) == 0 || slices.Contains(f.Types, t)) &&
		(len(f.SourceDomains) == 0 || slices.Contains(f.SourceDomains, d))
}

// KeyRange returns the sort-key range of From and To: keys k with
// lo <= k < hi are the activities created within them. "" leaves a side
// open.
func (f Filter) KeyRange() (lo, hi string) {
	if !f.From.IsZero() {
		lo = f.From.UTC().Format(SortKeyTime)
	}
	if !f.To.IsZero() {
		hi = f.To.UTC().Format(SortKeyTime)
	}
	return lo, hi
}

// String is the canonical form of f: equal filters give equal strings,
// different ones different strings. Tokens are bound to it.
func (f Filter) String() string {
	if f.IsZero() {
		return ""
	}
	var b strings.Builder
	bound := func(name string, t time.Time) {
		if !t.IsZero() {
			b.WriteString(name + "=" + t.UTC().Format(SortKeyTime) + ";")
		}
	}
	bound("from", f.From)
	bound("to", f.To)
	list := func(name string, vs []string) {
		if len(vs) == 0 {
			return
		}
		vs = slices.Clone(vs)
		slices.Sort(vs)
		b.WriteString(name + "=")
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			// Length-prefixed: values may hold any separator.
			fmt.Fprintf(&b, "%d:%s", len(v), v)
		}
		b.WriteByte(';')
	}
	list("type", strs(f.Types))
	list("sourceDomain", f.SourceDomains)
	list("targetType", strs(f.TargetTypes))
	return b.String()
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}
