-- Argo CD health of serveplane.dev's ServeCluster, ServeApplication and ServeDeployment: one script for all three.
-- Not observed yet (no status, or status.observedGeneration behind metadata.generation): Progressing.
-- Degraded=True: Degraded (also while Ready=True: the last good config still runs, but the synced spec was
-- refused, and Argo CD must say so). Ready=True: Healthy. Anything else: Progressing.
-- The message is "Reason: message" of the condition that decided, then of the others that are set.
local KIND = obj.kind or "resource"

local function find(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c == nil then
    return ""
  end
  local reason, message = c.reason or "", c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

local function join(...)
  local parts, seen = {}, {}
  for i = 1, select("#", ...) do
    local c = select(i, ...)
    local text = describe(c)
    local key = c and c.message or ""
    if text ~= "" and not seen[text] and (key == "" or not seen[key]) then
      table.insert(parts, text)
      seen[text] = true
      if key ~= "" then
        seen[key] = true
      end
    end
  end
  return table.concat(parts, "; ")
end

local hs = {}
local generation = (obj.metadata and obj.metadata.generation) or 0
local status = obj.status
if status == nil or status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the serveplane operator to observe " .. KIND .. " generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions or {}
local ready, progressing, degraded = find(conditions, "Ready"), find(conditions, "Progressing"), find(conditions, "Degraded")
if ready == nil and progressing == nil and degraded == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the serveplane operator to report conditions"
  return hs
end

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = join(degraded, ready)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if progressing ~= nil and progressing.status == "True" then
    hs.message = join(ready, progressing)
  else
    hs.message = join(ready)
  end
else
  hs.status = "Progressing"
  if progressing ~= nil and progressing.status == "True" then
    hs.message = join(ready, progressing)
  else
    hs.message = join(ready)
  end
end
return hs
