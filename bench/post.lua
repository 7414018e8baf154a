-- wrk script: POST the JSON body in $BODY_FILE with X-User-Id $USER_ID.
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-User-Id"] = os.getenv("USER_ID") or "1"
