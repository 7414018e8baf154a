-- wrk script: sends as user_1 into room $ROOM_ID: GraphQL sendGroupMessage,
-- or with MODE=rest the legacy POST /chat/group/<room>/.
local room = os.getenv("ROOM_ID") or "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-User-Id"] = "1"
local counter = 0
local rest = os.getenv("MODE") == "rest"
request = function()
  counter = counter + 1
  if rest then
    return wrk.format(nil, "/chat/group/" .. room .. "/", nil,
      string.format('{"from": 1, "text": "bench %d"}', counter))
  end
  local body = string.format(
    '{"query":"mutation($r: ID!, $t: String!) { sendGroupMessage(roomId: $r, text: $t) { id } }","variables":{"r":"%s","t":"bench %d"}}',
    room, counter)
  return wrk.format(nil, "/graphql", nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("WRK requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
