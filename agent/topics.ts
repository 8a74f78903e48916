/** Topic names of CONTRACT.md sections 2 and 3, from the root `~` = `{prefix}/{gatewayId}`. */
export interface Topics {
  root: string;
  status: string;
  events: string;
  health: string;
  cmdFilter: string;
  cmdPrefix: string;
  result(id: string): string;
}

export function topicsFor(prefix: string, gatewayId: string): Topics {
  const root = `${prefix}/${gatewayId}`;
  return {
    root,
    status: `${root}/status`,
    events: `${root}/events`,
    health: `${root}/health`,
    cmdFilter: `${root}/cmd/+`,
    cmdPrefix: `${root}/cmd/`,
    result: (id) => `${root}/res/${id}`,
  };
}
