package command

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/httpapi"
)

// EventsPath takes entity events over HTTP, for domain services that
// cannot reach NATS: the same mapping as the NATS consumer.
const EventsPath = "/api/v1/entityEvents"

// EventMapper turns entity events into activities (command/ingest).
type EventMapper interface {
	// MapEvents reads one event object or an array of them (many); a
	// *activity.ValidationError names the item and field of every event
	// that cannot become an activity.
	MapEvents(body []byte) (events []MappedEvent, many bool, err error)
}

// MappedEvent is what one entity event became.
type MappedEvent struct {
	EventID string
	// Activity is nil when the mapping ignores the event's type.
	Activity *activity.Activity
}

// EventResult is one event's line of the answer.
type EventResult struct {
	EventID string `json:"eventId"`
	// Result is recorded or ignored.
	Result   string             `json:"result"`
	Activity *activity.Activity `json:"activity"`
}

type eventsHandler struct {
	*recordHandler
	mapper EventMapper
}

// serve handles POST EventsPath: all events are mapped and validated
// before any is recorded, as for POST APIPath.
func (h *eventsHandler) serve(c *gin.Context) {
	body, ok := readBody(c)
	if !ok {
		return
	}
	events, many, err := h.mapper.MapEvents(body)
	if err != nil {
		var ve *activity.ValidationError
		if errors.As(err, &ve) {
			httpapi.Error(c, http.StatusBadRequest, "the request holds events that cannot be recorded", ve.Fields)
			return
		}
		httpapi.Internal(c, err)
		return
	}
	var acts []activity.Activity
	var eventOf []int // event index of each activity
	for i, e := range events {
		if e.Activity != nil {
			acts = append(acts, *e.Activity)
			eventOf = append(eventOf, i)
		}
	}
	out := make([]EventResult, len(events))
	for i, e := range events {
		out[i] = EventResult{EventID: e.EventID, Result: "ignored"}
	}
	status := http.StatusOK
	if len(acts) > 0 {
		res, err := h.svc.Record(c.Request.Context(), acts)
		if err != nil {
			var ce *ConflictError
			if errors.As(err, &ce) && ce.Index >= 0 {
				ce.Index = eventOf[ce.Index]
			}
			h.failRecord(c, many, err)
			return
		}
		for k, a := range res.Activities {
			out[eventOf[k]] = EventResult{EventID: events[eventOf[k]].EventID, Result: "recorded", Activity: &a}
		}
		if !res.AllRecorded {
			status = http.StatusCreated
		}
		c.Header(PositionHeader, strconv.FormatUint(res.Position, 10))
	}
	c.JSON(status, gin.H{"results": out})
}
