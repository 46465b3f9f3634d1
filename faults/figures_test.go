package faults

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

var figuresMu sync.Mutex

// logFigure appends one row of the README's reliability table to the file
// AH_FAULT_FIGURES names, when set (make test-long sets it).
func logFigure(t *testing.T, fault string, faults int, l *ledger) {
	t.Helper()
	path := os.Getenv("AH_FAULT_FIGURES")
	if path == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("figures: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "| %s | %d | %d | 0 | %s |\n", fault, faults, l.ackedCount(), l.summary())
}
