package eventsout

import (
	"context"
	"errors"

	"github.com/penstock-mta/penstock/config"
)

type unbuilt struct{}

func (unbuilt) Send(context.Context, []Event) error { return errors.New("not built") }
func (unbuilt) Close() error                        { return nil }

func newAMQP(config.Stream) Sender { return unbuilt{} }
func newNATS(config.Stream) Sender { return unbuilt{} }
