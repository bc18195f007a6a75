/* The public header must compile on its own as strict C11. */
#include <flow.h>

int flow_header_c_probe(void);
int
flow_header_c_probe(void)
{
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  return (int)o.version + (int)q.version + FLOW_ENOMEM;
}
