package campaigns

import (
	"context"
	"errors"
	"fmt"

	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/message"
	"github.com/penstock-mta/penstock/spool"
)

// RenderStage is the body pipeline's render stage (message.Stage): a
// campaign message (stored as its recipient's variables) becomes the
// message for that recipient, from its delivery's stored template; other
// messages pass through untouched for the load stage.
func (d *Store) RenderStage() message.Stage { return renderStage{d} }

type renderStage struct{ d *Store }

func (renderStage) Name() string { return "render" }

// Scope: a campaign message carries one recipient, whose address and
// variables the output depends on.
func (renderStage) Scope(m *spool.Message) message.Scope {
	if m.DeliveryID != "" {
		return message.PerSend
	}
	return message.PerMessage
}

func (r renderStage) Apply(_ context.Context, s *message.Send) error {
	msg := s.Msg
	if msg.DeliveryID == "" {
		return nil
	}
	// Reading the stored template can fail for a while (storage): retry.
	c, err := r.d.Template(msg.DeliveryID)
	if err != nil {
		return err
	}
	if len(s.Rcpts) == 0 {
		return errors.New("no recipient to render for")
	}
	// What follows depends only on stored data: no retry changes it.
	rc := msg.Recipients[s.Rcpts[0]]
	vars, err := campaign.DecodeVars(rc.Vars)
	if err != nil {
		return message.Permanent(fmt.Errorf("variables of %s: %w", rc.Addr, err))
	}
	meta := campaign.Meta{DeliveryID: msg.DeliveryID, Recipient: rc.Addr,
		MessageID: campaign.MessageID(msg.DeliveryID, uint64(msg.ID), r.d.d.Hostname())}
	b, err := c.AppendRender(make([]byte, 0, 4096), vars, meta)
	if err != nil {
		return message.Permanent(err)
	}
	s.Data = b
	if c.BodyFixed() {
		// The template is immutable for the delivery's life.
		s.BodyKey = "campaign:" + msg.DeliveryID
	}
	return nil
}
