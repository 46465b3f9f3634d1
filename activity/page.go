package activity

// Entry is an activity as a read model holds it: its SortKey and its API
// JSON document. Keeping the key saves readers from parsing the document
// to continue after it.
type Entry struct {
	Key     string
	Doc     []byte
	Expires int64 // unix seconds after which the entry is never returned; 0 = never
}

// PageQuery asks a read model for one page of a target's history, newest
// first.
type PageQuery struct {
	// Before is the exclusive upper sort key ("" = from the newest).
	Before string
	// Limit is the most entries to return.
	Limit int
	// Filter selects the entries. From/To bound the key range; the other
	// fields are checked entry by entry.
	Filter Filter
	// MaxScan bounds the entries examined when Filter checks entries one
	// by one (0: the read model's default). A page stopped by it has
	// fewer than Limit entries and a ScannedTo to continue below.
	MaxScan int
}

// Page is what a read model returns for a PageQuery.
type Page struct {
	Entries []Entry
	// Found reports whether the target has any history at all.
	Found bool
	// ScannedTo is set when MaxScan stopped the scan before the page was
	// full: every entry from Before down to and including this key was
	// examined, so the history continues strictly below it.
	ScannedTo string
	// Scanned counts the entries examined, and Index names the target's
	// index in the read model (a Redis key): both for the query log.
	Scanned int
	Index   string
}
