// What a TypeScript caller of this API writes against the types openapi-typescript generates from openapi.yaml.
// tests/contract/test_generated_clients.py type-checks it beside the generated schema.ts (tsc --noEmit, strict):
// it is never run, so every check here is a type, and a contract change that breaks a caller breaks this file.
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
export type ProblemReason = Schemas["ProblemReason"];
export type AuthorizationPage = Schemas["AuthorizationPage"];

// `reason` is one of the service's reasons, not any string.
export const expired: ProblemReason = "auth_code_expired";
// @ts-expect-error: no such reason
export const unknown: ProblemReason = "no_such_reason";

// Switching on `reason` narrows it; what is left is still a ProblemReason.
export function nextStep(problem: Problem): string {
  switch (problem.reason) {
    case "auth_code_expired":
      return "Ask the creator for a new code.";
    case "advertiser_not_found":
      return "Register the ad account first.";
    default: {
      const other: ProblemReason = problem.reason;
      return problem.retryable ? `Retry later (${other}).` : `Refused (${other}).`;
    }
  }
}

// The list operation answers the named page, and takes its `next_cursor` back as `cursor`.
type ListAuthorizations = paths["/v1/advertisers/{tiktok_advertiser_id}/authorizations"]["get"];
type ListQuery = NonNullable<ListAuthorizations["parameters"]["query"]>;
export type ListAnswer = ListAuthorizations["responses"][200]["content"]["application/json"];

export async function everyAuthorizationId(list: (query: ListQuery) => Promise<ListAnswer>): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page: AuthorizationPage = await list(cursor === null ? { limit: 1 } : { limit: 1, cursor });
    ids.push(...page.items.map((authorization) => authorization.id));
    cursor = page.next_cursor;
  } while (cursor !== null);
  return ids;
}

// A 201 says where the new resource is.
type Registered = paths["/v1/advertisers"]["post"]["responses"][201];
export function whereIsIt(headers: Registered["headers"]): string {
  const location: string = headers.Location;
  return location;
}
