-- wrk script for `make bench`: POSTs (or GETs) one request shape over and over and sorts the
-- answers into ok / shed (a clean, retryable overload refusal) / error, then prints one JSON line.
--
-- Configured by environment variables (set by changeflow-bench):
--   BENCH_METHOD    HTTP method (default POST)
--   BENCH_BODY      request body; every "{n}" becomes a number unique to this request
--   BENCH_HEADERS   extra headers, one "Name: value" per line ("{n}" as in the body)
--   BENCH_SESSIONS  a file of MCP session ids, one per line: requests take them in turn
--   BENCH_OK        the HTTP status that means success (default 200)
--   BENCH_ANSWER_BYTES  for large answers that are all the same (tools/list): the size of one
--                   whole answer as it crosses the wire. Answers are then not handed to Lua one
--                   by one (wrk copying each 77 KB answer into Lua cost more CPU than the front
--                   door's own work); statuses are counted instead, and the bytes read must
--                   average one whole answer each, within 1 % (what answers cut off when the run
--                   ends add), or every answer counts as an error.
-- An MCP answer is ok when it is a result without "isError":true; a tool error or a 503 that
-- says "overloaded" is shed; anything else (JSON-RPC errors, other statuses, tool errors) is an
-- error.

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
  table.insert(threads, thread)
end

local method, template, headers, sessions, ok_status
local counter = 0
ok, shed, errors = 0, 0, 0
first_error = ""

function init(args)
  method = os.getenv("BENCH_METHOD") or "POST"
  template = os.getenv("BENCH_BODY")
  ok_status = tonumber(os.getenv("BENCH_OK") or "200")
  headers = {}
  for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    if name then headers[name] = value end
  end
  local file = os.getenv("BENCH_SESSIONS")
  if file then
    sessions = {}
    for line in io.lines(file) do
      if line ~= "" then table.insert(sessions, line) end
    end
  end
end

function request()
  counter = counter + 1
  local body = nil
  if template then
    body = string.gsub(template, "{n}", thread_id .. "-" .. counter)
  end
  local sent = {}
  for name, value in pairs(headers) do
    sent[name] = string.gsub(value, "{n}", thread_id .. "-" .. counter)
  end
  if sessions then
    -- Threads start at different sessions so that together they cover all of them.
    local index = ((counter * 2 + thread_id) % #sessions) + 1
    sent["Mcp-Session-Id"] = sessions[index]
  end
  return wrk.format(method, nil, sent, body)
end

answer_bytes = tonumber(os.getenv("BENCH_ANSWER_BYTES") or "")

-- Defined only when answers are read one by one: wrk hands answers to Lua when it exists.
if not answer_bytes then
  function response(status, response_headers, body)
    local overloaded = string.find(body, "overloaded", 1, true) ~= nil
    if status == ok_status then
      local tool_error = string.find(body, '"isError":true', 1, true) ~= nil
      local rpc_error = string.find(body, '"error":{', 1, true) ~= nil
      if not tool_error and not rpc_error then
        ok = ok + 1
        return
      end
      if tool_error and overloaded then
        shed = shed + 1
        return
      end
    elseif status == 503 and overloaded then
      shed = shed + 1
      return
    end
    errors = errors + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body, 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_shed, total_errors, example = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_shed = total_shed + thread:get("shed")
    total_errors = total_errors + thread:get("errors")
    if example == "" then example = thread:get("first_error") end
  end
  local socket = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  if answer_bytes then
    total_errors = summary.errors.status
    total_ok = summary.requests - total_errors
    local mean = summary.bytes / math.max(summary.requests, 1)
    if math.abs(mean - answer_bytes) > answer_bytes / 100 then
      total_ok, total_errors = 0, summary.requests
      example = string.format("answers averaged %.0f bytes; one whole answer is %d", mean,
        answer_bytes)
    elseif total_errors > 0 then
      example = total_errors .. " answers had an HTTP error status"
    end
  end
  example = string.gsub(string.gsub(example, "\\", "\\\\"), '"', '\\"')
  example = string.gsub(example, "[%c]", " ")
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"ok":%d,"shed":%d,"errors":%d,"socket_errors":%d,"first_error":"%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, total_ok, total_shed, total_errors, socket, example))
end
