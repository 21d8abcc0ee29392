package mta

import (
	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/bounce"
)

func (b backend) Quarantine() api.Quarantine                   { return b.m.Quarantine }
func (b backend) Bounces(site string, n int) []bounce.TopEntry { return b.m.bounceTop.List(site, n) }
