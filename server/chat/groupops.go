package chat

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// Group changes ride the send pipeline: a change is queued on its group's
// shard like a send and committed there on its own (one ChangeGroup
// transaction: the change and its system message), between the batches of
// sends queued before and after it. So the system message's seq is fanned
// out in order with the group's other messages (invariant 1), and a send
// queued after a kick commits after it, under the new membership epoch.

// hasChange tells whether a batch holds a group change.
func hasChange(batch []*pending) bool {
	for _, s := range batch {
		if s.change != nil {
			return true
		}
	}
	return false
}

// splitChanges cuts a batch into runs of sends and single changes, in
// order.
func splitChanges(batch []*pending) [][]*pending {
	var parts [][]*pending
	start := 0
	for i, s := range batch {
		if s.change == nil {
			continue
		}
		if i > start {
			parts = append(parts, batch[start:i])
		}
		parts = append(parts, batch[i:i+1])
		start = i + 1
	}
	if start < len(batch) {
		parts = append(parts, batch[start:])
	}
	return parts
}

// commitPart commits one part of splitChanges: a change, or sends.
func (p *pipeline) commitPart(part []*pending) committed {
	if part[0].change != nil {
		return p.commitChange(part[0])
	}
	return p.commit(part)
}

// commitChange runs one group change. Its system message gets a message id
// and time like a send, and a client_msg_id of its own ("sys-<msg id>",
// unique since msg ids are) under the empty sender.
func (p *pipeline) commitChange(s *pending) committed {
	c := committed{batch: []*pending{s}, results: make([]storage.AppendResult, 1), errs: make([]error, 1)}
	id, err := p.ids.Next()
	if err != nil { // the node number's lease lapsed, as for a send
		c.errs[0] = apierr.FromStorage("chat: group change", fmt.Errorf("%w: %w", storage.ErrUnavailable, err))
		return c
	}
	s.msg.MsgID = id
	s.msg.ClientMsgID = "sys-" + strconv.FormatInt(id, 10)
	s.msg.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	// Like a send's commit, not cut short by a shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.results[0], s.content, c.errs[0] = s.change(ctx, s.msg)
	return c
}

// changed tells whether the change at i of c stored a system message (a
// refusal, a failure or an edit with nothing to change stores none).
func changed(c committed, i int) bool {
	return c.errs[i] == nil && c.results[i].Message.Seq > 0
}
