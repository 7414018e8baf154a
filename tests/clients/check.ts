// Compiled with the generated types (tsc --noEmit --strict): the types say
// what the operations return.
import type {
  RoomQuery,
  SendGroupMutation,
  TaskUpdatedSubscription,
  UsersQuery,
  UsersQueryVariables,
} from './generated/graphql';

export function names(data: UsersQuery): string[] {
  return data.users.edges.map((edge) => edge.node.username);
}

export function lastText(data: RoomQuery): string | undefined {
  const edges = data.room?.messages.edges ?? [];
  return edges[edges.length - 1]?.node.text;
}

export const firstPage: UsersQueryVariables = { first: 10, filter: { username: 'user_1' } };

export function taskId(data: SendGroupMutation): string {
  return data.sendGroupMessage.id;
}

export function finished(update: TaskUpdatedSubscription): boolean {
  return update.taskUpdated.state === 'SUCCESS' || update.taskUpdated.state === 'FAILURE';
}
