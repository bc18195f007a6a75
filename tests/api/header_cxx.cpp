// The public header must compile as C++ with every warning on.
#include <flow.h>

int flow_header_cxx_probe();
int
flow_header_cxx_probe()
{
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  flow_engine *e = nullptr;
  (void)e;
  return static_cast<int>(o.version + q.version) + FLOW_ENOMEM;
}
