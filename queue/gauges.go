package queue

// Gauges are the queue's metrics: recipients by status text (every status
// present, at 0 when nothing waits so, so that each is a series) and open
// connections by rule name. One walk of the site views serves both.
func (q *Queue) Gauges() (byStatus, connsByRule map[string]int) {
	byStatus, connsByRule = map[string]int{}, map[string]int{}
	for _, st := range Statuses() {
		byStatus[st] = 0
	}
	for _, v := range q.Sites() {
		for st, n := range v.ByStatus {
			byStatus[st] += n
		}
		if v.Connections > 0 {
			connsByRule[v.Rule.Name] += v.Connections
		}
	}
	return byStatus, connsByRule
}
