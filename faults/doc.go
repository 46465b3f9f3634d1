// Package faults holds the fault-injection suite: its tests build the
// activityhistory binary (and a nats-server from the module the event
// store uses), run them as processes next to a throwaway redis-server, and
// kill, stall and flood them while clients write and read. Each ends by
// checking that nothing acknowledged was lost: the store holds every
// acknowledged id once, the read model the same documents, and
// `verify --all` passes. Quick forms run in `make test`; AH_LONG=1 runs
// the long forms (`make test-long`).
package faults
