------------------------------- MODULE KameStm -------------------------------
(***************************************************************************)
(* The kame-stm protocol (src/protocol/) on a static tree, one TLA+ action *)
(* per Rust step function, with the same names (CamelCase here,           *)
(* snake_case there; docs/tla-mapping.md, enforced by tests/tla_mapping.rs).*)
(*                                                                         *)
(* Trees (constant Levels):                                                *)
(*   Levels = 2 :  P -> {C1, C2}                                           *)
(*   Levels = 3 :  G -> P -> {C1, C2}                                      *)
(* The same actions serve both trees: bundling a child whose packet is     *)
(* missing pushes a nested bundle frame (same bundle serial), unbundling   *)
(* walks up one ancestor per step, exactly as the Rust explicit frame      *)
(* stack does (src/protocol/mod.rs).                                       *)
(*                                                                         *)
(* Workload: every thread runs MaxCommits iterations.  In one iteration a  *)
(* thread in RootThreads runs a transaction at the root incrementing both  *)
(* leaves, a thread in MidThreads (3 levels only) one at P incrementing    *)
(* both leaves, and a thread in LeafThreads one transaction at each leaf   *)
(* incrementing it.  A transaction = snapshot (SnapRead, SnapCheck, bundle *)
(* or unbundle frames), the closure (local), commit (CommitStart ...       *)
(* CommitDone); a conflict retries with a fresh snapshot (transaction.rs   *)
(* drive()).                                                               *)
(*                                                                         *)
(* Granularity: every action performs at most one load or one CAS of one  *)
(* linkage, as the Rust step does.  Rust steps that touch no shared memory *)
(* at all (handing a finished frame's outcome to the frame below, Phase 3  *)
(* noticing it has nothing left to CAS, SnapRead on a retry) are merged    *)
(* into the neighbouring action; a purely local step commutes with every   *)
(* step of every other thread, so this removes no interleaving.            *)
(*                                                                         *)
(* Identity: Rust compares wrappers and packets by pointer.  Here every    *)
(* wrapper and packet is a value that carries the Lamport serial of the    *)
(* step that created it (packets: field id), which makes values created by *)
(* different steps distinct; see tla/README.md "Identity".                 *)
(*                                                                         *)
(* Priority (issue 3): every CAS action is gated by CanProceed(t, n) for   *)
(* the node it CASes, a failed CAS applies TagAfterFail, a successful one  *)
(* TagAfterSuccess (no-op), a commit success ClearMyTags; a thread that    *)
(* waits on a foreign tag may PreemptTag it when it is older.  Privilege = *)
(* FALSE switches all of that off, as the Rust `no-privilege` feature does.*)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Threads,      \* thread ids: 1..N (naturals: tags and serials compare them)
    RootThreads,  \* threads running a transaction at the root each iteration
    MidThreads,   \* threads running a transaction at P (Levels = 3 only)
    LeafThreads,  \* threads running one transaction per leaf each iteration
    MaxCommits,   \* iterations per thread
    Levels,       \* 2 or 3
    Privilege,    \* FALSE = the `no-privilege` feature
    RestampBundled, \* TRUE: phase 3 also re-stamps children found already
                  \* bundled (see tla/FINDINGS.md #1); FALSE: it skips them
    SafeAdopt,    \* TRUE: after its own phase-1 unbundle CASed the bundling
                  \* node, a bundle follows the new wrapper only if the
                  \* unbundle replaced the very wrapper the bundle holds
                  \* (else: disturbed); FALSE: it always follows (FINDINGS #2)
    Null          \* model value

ASSUME Levels \in {2, 3}
ASSUME Threads = 1..Cardinality(Threads) /\ Threads # {}
ASSUME RootThreads \cup MidThreads \cup LeafThreads = Threads
ASSUME Levels = 2 => MidThreads = {}
ASSUME MaxCommits \in Nat \ {0}
ASSUME Privilege \in BOOLEAN
ASSUME RestampBundled \in BOOLEAN
ASSUME SafeAdopt \in BOOLEAN

VARIABLES
    linkage,      \* [Nodes -> Wrapper]: the one atomic word of each node
    serial,       \* [Threads -> Serial]: the thread-local Lamport serial (serial.rs)
    pc,           \* [Threads -> step name]: the next step of the top frame
    target,       \* [Threads -> Nodes \cup {Null}]: node of the current transaction
    local,        \* [Threads -> Local]: the operation's frames and results
    budget,       \* [Threads -> 0..MaxCommits]: iterations left
    queue,        \* [Threads -> SUBSET Nodes]: transactions left in this iteration
    priorityTag   \* [Nodes -> Null \cup <<iter, tid>>]

vars == <<linkage, serial, pc, target, local, budget, queue, priorityTag>>

-----------------------------------------------------------------------------
(* The tree *)

Leaves   == {"C1", "C2"}
RootNode == IF Levels = 2 THEN "P" ELSE "G"
Inner    == IF Levels = 2 THEN {"P"} ELSE {"G", "P"}
Nodes    == Inner \cup Leaves

\* Children in list order (the Rust Children::nodes order).
Kids(n) == CASE n = "P" -> <<"C1", "C2">>
             [] n = "G" -> <<"P">>
             [] OTHER   -> <<>>
KidSet(n) == {Kids(n)[i] : i \in DOMAIN Kids(n)}
ParentOf(n) == CASE n \in Leaves            -> "P"
                 [] n = "P" /\ Levels = 3   -> "G"
                 [] OTHER                   -> Null

\* Leaves whose payload a transaction at n increments.
Incs(n) == IF n \in Leaves THEN {n} ELSE Leaves

-----------------------------------------------------------------------------
(* Lamport serials: counter * SerialBase + tid (serial.rs: counter << 16 | tid). *)

SerialBase == Cardinality(Threads) + 1
Cnt(s) == s \div SerialBase
Max(a, b) == IF a > b THEN a ELSE b

\* serial::gen(last) run by a thread whose thread-local serial is tls.
Gen(tls, last) == (Max(Cnt(last), Cnt(tls)) + 1) * SerialBase + (tls % SerialBase)

\* Several gen() calls in a row (UnbundleWalk prepares one copy per ancestor).
RECURSIVE GenMany(_, _)
GenMany(tls, lasts) ==
    IF lasts = <<>> THEN <<>>
    ELSE LET s == Gen(tls, Head(lasts)) IN <<s>> \o GenMany(s, Tail(lasts))

-----------------------------------------------------------------------------
(* Packets and wrappers (packet.rs, wrapper.rs).                           *)
(* Packet  = [id, pay, sub, missing]; sub = [KidSet(n) -> Packet \cup {Null}] *)
(*           for an inner node (Null = void slot), <<>> for a leaf.        *)
(* Wrapper = [pkt, by, ser]: priority (by = Null, pkt # Null) or bundled   *)
(*           (by = the parent, pkt = Null).                                *)

PW(p, s)  == [pkt |-> p, by |-> Null, ser |-> s]
BW(n, s)  == [pkt |-> Null, by |-> n, ser |-> s]
HasPri(w) == w.by = Null

\* Packet::is_complete
Complete(p) == ~p.missing \/ DOMAIN p.sub = {}

\* No void slot anywhere below p (packet::all_sub_reachable on a tree
\* without hard links: a void slot's node cannot be present elsewhere).
RECURSIVE NoVoid(_)
NoVoid(p) == \A c \in DOMAIN p.sub : p.sub[c] # Null /\ NoVoid(p.sub[c])

\* The new version a transaction at n publishes (the closure: every leaf
\* below n gets +1; every packet on those paths is a new copy).
RECURSIVE NewPkt(_, _, _)
NewPkt(p, n, s) ==
    IF n \in Leaves THEN [p EXCEPT !.pay = @ + 1, !.id = s]
    ELSE [p EXCEPT !.id = s, !.sub = [c \in DOMAIN @ |-> NewPkt(@[c], c, s)]]

InitPkt(n) == [id |-> 0, pay |-> 0,
               sub |-> IF n \in Leaves THEN <<>> ELSE [c \in KidSet(n) |-> Null],
               missing |-> n \notin Leaves]

-----------------------------------------------------------------------------
(* Priority tags (issue 3; src/negotiation.rs) *)

iter(t)  == MaxCommits - budget[t]
MyTag(t) == <<iter(t), t>>
TagOlder(a, b) == a[1] < b[1] \/ (a[1] = b[1] /\ a[2] < b[2])

CanProceed(t, n) ==
    IF ~Privilege \/ priorityTag[n] = Null THEN TRUE ELSE priorityTag[n][2] = t

TagAfterFail(t, n) ==
    IF ~Privilege THEN priorityTag[n]
    ELSE IF priorityTag[n] = Null THEN MyTag(t)
    ELSE IF priorityTag[n][2] = t THEN MyTag(t)
    ELSE IF TagOlder(MyTag(t), priorityTag[n]) THEN MyTag(t)
    ELSE priorityTag[n]

TagAfterSuccess(t, n) == priorityTag[n]

ClearMyTags(t) ==
    IF ~Privilege THEN priorityTag
    ELSE [n \in Nodes |-> IF priorityTag[n] # Null /\ priorityTag[n][2] = t
                          THEN Null ELSE priorityTag[n]]

CasFailed(t, n)    == priorityTag' = [priorityTag EXCEPT ![n] = TagAfterFail(t, n)]
CasSucceeded(t, n) == priorityTag' = [priorityTag EXCEPT ![n] = TagAfterSuccess(t, n)]

-----------------------------------------------------------------------------
(* Operation state: a stack of bundle / unbundle frames (mod.rs Frame) on  *)
(* top of the snapshot or commit frame, which op names.                    *)
(* One record shape for both frame kinds (unused fields Null / empty).     *)
(*   bundle:   node, w (the node's wrapper as last seen or installed), ser *)
(*             (bundle serial), isRoot, coll (collected [pkt, w] per child *)
(*             so far; w = Null: nothing to CAS in phase 3), incomplete,   *)
(*             idx (phase-3 position)                                      *)
(*   unbundle: node (the target), tw (its wrapper), mode, ser (bundle      *)
(*             serial in "bundle" mode), chain (ancestors walked, nearest  *)
(*             first, [node, w]), found, copies, casPos                    *)

Frame0 == [kind |-> Null, node |-> Null, w |-> Null, ser |-> Null, isRoot |-> FALSE,
           coll |-> <<>>, incomplete |-> FALSE, idx |-> 0,
           mode |-> Null, tw |-> Null, chain |-> <<>>, found |-> Null,
           copies |-> <<>>, casPos |-> 0]

BundleFrame(n, w, s, isRoot) ==
    [Frame0 EXCEPT !.kind = "bundle", !.node = n, !.w = w, !.ser = s, !.isRoot = isRoot]

UnbundleFrame(n, tw, mode, s) ==
    [Frame0 EXCEPT !.kind = "unbundle", !.node = n, !.tw = tw, !.mode = mode, !.ser = s]

\* op: "snap" (snapshot frame at the bottom) or "commit" (commit frame).
\* snapPkt / snapW: the snapshot's packet and wrapper (= the commit's `old`
\* and `snap_wrapper`); readW: commit_read's wrapper; result: commit result.
Local0 == [op |-> Null, stack |-> <<>>, snapPkt |-> Null, snapW |-> Null,
           readW |-> Null, result |-> Null]

Top(l) == l.stack[Len(l.stack)]
SetTop(l, f) == [l EXCEPT !.stack = [@ EXCEPT ![Len(@)] = f]]
PopL(l) == [l EXCEPT !.stack = SubSeq(@, 1, Len(@) - 1)]
PushL(l, f) == [l EXCEPT !.stack = Append(@, f)]

\* Abandon everything and take the snapshot again (a Disturbed outcome is
\* passed down every frame to the snapshot frame, which retries).
Disturbed(l) == [pc |-> "snap_check", l |-> [Local0 EXCEPT !.op = "snap"]]

\* Phase 1 collected one more child (BundleFrame::push).
Collect(l, p, w) ==
    LET f  == Top(l)
        f2 == [f EXCEPT !.coll = Append(@, [pkt |-> p, w |-> w]),
                        !.incomplete = IF p = Null THEN TRUE ELSE @ \/ ~Complete(p)]
    IN [pc |-> IF Len(f2.coll) = Len(Kids(f2.node)) THEN "bundle_phase2" ELSE "bundle_phase1",
        l  |-> SetTop(l, f2)]

\* First phase-3 position at or after i that has a wrapper to CAS (0: none).
NextP3(coll, i) ==
    LET S == {j \in i..Len(coll) : coll[j].w # Null}
    IN IF S = {} THEN 0 ELSE CHOOSE j \in S : \A k \in S : j <= k

\* A finished frame hands its outcome to the frame below (the Rust `returned`
\* argument of the next step).  l has the finished frame popped already.
\* r.kind: "success" (bundle, r.w), "found" (r.p), "newsub" (r.inst: the
\* wrappers the unbundle installed, [node -> wrapper]), "collided",
\* "changed", "disturbed".
AfterReturn(l, r) ==
    IF l.stack = <<>> THEN
        IF l.op = "snap" THEN                                   \* snap_check
            CASE r.kind = "success" ->
                    [pc |-> "commit_start",
                     l  |-> [l EXCEPT !.op = "commit", !.snapPkt = r.w.pkt, !.snapW = r.w]]
              [] r.kind = "found" ->
                    [pc |-> "commit_start",
                     l  |-> [l EXCEPT !.op = "commit", !.snapPkt = r.p, !.snapW = Null]]
              [] OTHER -> [pc |-> "snap_check", l |-> l]
        ELSE                                                    \* commit_read
            CASE r.kind = "newsub"  -> [pc |-> "commit_done", l |-> [l EXCEPT !.result = "ok"]]
              [] r.kind = "changed" -> [pc |-> "commit_done", l |-> [l EXCEPT !.result = "conflict"]]
              [] OTHER              -> [pc |-> "commit_read", l |-> l]
    ELSE                                                        \* bundle_phase1
        CASE r.kind = "success"  -> Collect(l, r.w.pkt, r.w)
          [] r.kind = "collided" -> Collect(l, Null, Null)
          [] r.kind = "newsub" ->
                \* BundleFrame::adopt: follow our own node's new wrapper
                \* (r.inst: node -> [old, new] wrappers the unbundle CASed).
                LET f == Top(l) IN
                IF f.node \notin DOMAIN r.inst THEN [pc |-> "bundle_phase1", l |-> l]
                ELSE IF SafeAdopt /\ r.inst[f.node].old # f.w THEN Disturbed(l)
                ELSE [pc |-> "bundle_phase1",
                      l  |-> SetTop(l, [f EXCEPT !.w = r.inst[f.node].new])]
          [] OTHER -> Disturbed(l)

Outcome(kind) == [kind |-> kind, w |-> Null, p |-> Null, inst |-> <<>>]

\* Packets of every level of an unbundle chain that ends at a priority
\* ancestor: level 0 = the target, level k = that ancestor (locate()).
\* Null when some slot on the way is void.
LevelNode(f, j) == IF j = 0 THEN f.node ELSE f.chain[j].node
RECURSIVE LevelPkt(_, _)
LevelPkt(f, j) ==
    IF j = Len(f.chain) THEN f.chain[j].w.pkt
    ELSE LET up == LevelPkt(f, j + 1) IN
         IF up = Null THEN Null ELSE up.sub[LevelNode(f, j)]

-----------------------------------------------------------------------------
Init ==
    /\ linkage = [n \in Nodes |-> PW(InitPkt(n), 0)]
    /\ serial = [t \in Threads |-> t]
    /\ pc = [t \in Threads |-> "idle"]
    /\ target = [t \in Threads |-> Null]
    /\ local = [t \in Threads |-> Local0]
    /\ budget = [t \in Threads |-> MaxCommits]
    /\ queue = [t \in Threads |-> {}]
    /\ priorityTag = [n \in Nodes |-> Null]

\* The transactions one iteration of t runs, in this order.
JobOrder == IF Levels = 2 THEN <<"P", "C1", "C2">> ELSE <<"G", "P", "C1", "C2">>
Jobs(t) == (IF t \in RootThreads THEN {RootNode} ELSE {})
           \cup (IF t \in MidThreads THEN {"P"} ELSE {})
           \cup (IF t \in LeafThreads THEN Leaves ELSE {})
FirstJob(q) == JobOrder[CHOOSE i \in DOMAIN JobOrder :
                           JobOrder[i] \in q /\ \A j \in 1..(i - 1) : JobOrder[j] \notin q]

-----------------------------------------------------------------------------
(* snapshot.rs *)

\* Entry of a snapshot; also picks the next transaction of the iteration
\* (role plumbing, no shared memory).
SnapRead(t) ==
    /\ pc[t] = "idle"
    /\ budget[t] > 0
    /\ LET q == IF queue[t] = {} THEN Jobs(t) ELSE queue[t] IN
         /\ queue' = [queue EXCEPT ![t] = q]
         /\ target' = [target EXCEPT ![t] = FirstJob(q)]
    /\ pc' = [pc EXCEPT ![t] = "snap_check"]
    /\ local' = [local EXCEPT ![t] = [Local0 EXCEPT !.op = "snap"]]
    /\ UNCHANGED <<linkage, serial, budget, priorityTag>>

SnapCheck(t) ==
    /\ pc[t] = "snap_check"
    /\ LET n == target[t]
           w == linkage[n]
           l == local[t]
       IN
       IF HasPri(w) /\ Complete(w.pkt) THEN
            /\ pc' = [pc EXCEPT ![t] = "commit_start"]
            /\ local' = [local EXCEPT ![t] = [l EXCEPT !.op = "commit", !.snapPkt = w.pkt, !.snapW = w]]
            /\ UNCHANGED serial
       ELSE IF HasPri(w) THEN
            LET b == Gen(serial[t], w.ser) IN
            /\ serial' = [serial EXCEPT ![t] = b]
            /\ pc' = [pc EXCEPT ![t] = "bundle_phase1"]
            /\ local' = [local EXCEPT ![t] = PushL(l, BundleFrame(n, w, b, TRUE))]
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = PushL(l, UnbundleFrame(n, w, "snap", Null))]
            /\ UNCHANGED serial
    /\ UNCHANGED <<linkage, target, budget, queue, priorityTag>>

-----------------------------------------------------------------------------
(* bundle.rs *)

\* Loads the next child; collects it, or starts a nested bundle / unbundle.
BundlePhase1(t) ==
    /\ pc[t] = "bundle_phase1"
    /\ LET l  == local[t]
           f  == Top(l)
           c  == Kids(f.node)[Len(f.coll) + 1]
           cw == linkage[c]
           slot == f.w.pkt.sub[c]
       IN
       IF HasPri(cw) /\ Complete(cw.pkt) THEN
            LET r == Collect(l, cw.pkt, cw) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
       ELSE IF HasPri(cw) THEN
            \* missing packet: bundle the child first, same serial
            /\ pc' = [pc EXCEPT ![t] = "bundle_phase1"]
            /\ local' = [local EXCEPT ![t] = PushL(l, BundleFrame(c, cw, f.ser, FALSE))]
       ELSE IF cw.by = f.node /\ slot # Null /\ Complete(slot) THEN
            \* already bundled into this node: phase 3 re-stamps its bundled
            \* reference (RestampBundled) or leaves it alone
            LET r == Collect(l, slot, IF RestampBundled THEN cw ELSE Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
       ELSE
            \* bundled elsewhere or our slot is stale: unbundle it first
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = PushL(l, UnbundleFrame(c, cw, "bundle", f.ser))]
    /\ UNCHANGED <<linkage, serial, target, budget, queue, priorityTag>>

\* CAS the node to a packet holding the collected slots, still missing.
BundlePhase2(t) ==
    /\ pc[t] = "bundle_phase2"
    /\ LET l  == local[t]
           f  == Top(l)
           n  == f.node
           np == [id |-> f.ser, pay |-> f.w.pkt.pay, missing |-> TRUE,
                  sub |-> [c \in KidSet(n) |->
                             f.coll[CHOOSE i \in DOMAIN Kids(n) : Kids(n)[i] = c].pkt]]
           nw == PW(np, f.ser)
           i3 == NextP3(f.coll, 1)
       IN
       /\ CanProceed(t, n)
       /\ IF linkage[n] = f.w THEN
               /\ linkage' = [linkage EXCEPT ![n] = nw]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = IF i3 = 0 THEN "bundle_phase4" ELSE "bundle_phase3"]
               /\ local' = [local EXCEPT ![t] = SetTop(l, [f EXCEPT !.w = nw, !.idx = i3])]
          ELSE LET r == Disturbed(l) IN
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue>>

\* CAS one collected priority child to a bundled reference.
BundlePhase3(t) ==
    /\ pc[t] = "bundle_phase3"
    /\ LET l  == local[t]
           f  == Top(l)
           i  == f.idx
           c  == Kids(f.node)[i]
           ew == f.coll[i].w
           f1 == [f EXCEPT !.coll[i].w = Null]      \* wrapper.take()
       IN
       /\ CanProceed(t, c)
       /\ IF linkage[c] = ew THEN
               LET i3 == NextP3(f1.coll, i + 1) IN
               /\ linkage' = [linkage EXCEPT ![c] = BW(f.node, f.ser)]
               /\ CasSucceeded(t, c)
               /\ pc' = [pc EXCEPT ![t] = IF i3 = 0 THEN "bundle_phase4" ELSE "bundle_phase3"]
               /\ local' = [local EXCEPT ![t] = SetTop(l, [f1 EXCEPT !.idx = i3])]
          ELSE
               /\ CasFailed(t, c)
               /\ UNCHANGED linkage
               /\ IF linkage[c].ser = f.ser THEN
                      \* changed by this very bundle through another path: collect again
                      /\ pc' = [pc EXCEPT ![t] = "bundle_phase1"]
                      /\ local' = [local EXCEPT ![t] =
                            SetTop(l, [f EXCEPT !.coll = <<>>, !.incomplete = FALSE, !.idx = 0])]
                  ELSE LET r == Disturbed(l) IN
                      /\ pc' = [pc EXCEPT ![t] = r.pc]
                      /\ local' = [local EXCEPT ![t] = r.l]
    /\ UNCHANGED <<serial, target, budget, queue>>

\* CAS the node to the same slots marked complete (a nested bundle that met
\* a void slot stays missing; a root bundle with an unreachable void slot
\* gives up without a CAS).
BundlePhase4(t) ==
    /\ pc[t] = "bundle_phase4"
    /\ LET l  == local[t]
           f  == Top(l)
           n  == f.node
           np == [f.w.pkt EXCEPT !.missing = ~f.isRoot /\ f.incomplete]
           nw == PW(np, f.ser)
       IN
       IF f.isRoot /\ f.incomplete /\ ~NoVoid(np) THEN
            LET r == Disturbed(l) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED <<linkage, priorityTag>>
       ELSE
            /\ CanProceed(t, n)
            /\ IF linkage[n] = f.w THEN
                    LET r == AfterReturn(PopL(l), [Outcome("success") EXCEPT !.w = nw]) IN
                    /\ linkage' = [linkage EXCEPT ![n] = nw]
                    /\ CasSucceeded(t, n)
                    /\ pc' = [pc EXCEPT ![t] = r.pc]
                    /\ local' = [local EXCEPT ![t] = r.l]
               ELSE LET r == Disturbed(l) IN
                    /\ CasFailed(t, n)
                    /\ pc' = [pc EXCEPT ![t] = r.pc]
                    /\ local' = [local EXCEPT ![t] = r.l]
                    /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue>>

-----------------------------------------------------------------------------
(* unbundle.rs *)

\* Loads the next ancestor; at a priority ancestor locates the target's
\* packet and either returns (read-only snapshot, conflict, collision,
\* disturbed) or prepares the missing copies of every ancestor (one fresh
\* serial each, nearest first) for the CAS steps.
UnbundleWalk(t) ==
    /\ pc[t] = "unbundle_walk"
    /\ LET l     == local[t]
           f     == Top(l)
           lower == IF f.chain = <<>> THEN f.tw ELSE f.chain[Len(f.chain)].w
           par   == lower.by
           pw    == linkage[par]
           f2    == [f EXCEPT !.chain = Append(@, [node |-> par, w |-> pw])]
           k     == Len(f2.chain)
           found == LevelPkt(f2, 0)
           sers  == GenMany(serial[t], [i \in 1..k |-> f2.chain[i].w.ser])
           copies == [i \in 1..k |->
                        PW([LevelPkt(f2, i) EXCEPT !.missing = TRUE, !.id = sers[i]], sers[i])]
           Ret(kind, p) == AfterReturn(PopL(l), [Outcome(kind) EXCEPT !.p = p])
       IN
       IF f.mode = "bundle" /\ pw.ser = f.ser THEN
            LET r == Ret("collided", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED serial
       ELSE IF ~HasPri(pw) THEN
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = SetTop(l, f2)]
            /\ UNCHANGED serial
       ELSE IF found = Null THEN
            LET r == Ret("disturbed", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED serial
       ELSE IF f.mode = "snap" /\ Complete(found) THEN
            LET r == Ret("found", found) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED serial
       ELSE IF f.mode = "commit" /\ found # l.snapPkt THEN
            LET r == Ret("changed", Null) IN
            /\ pc' = [pc EXCEPT ![t] = r.pc]
            /\ local' = [local EXCEPT ![t] = r.l]
            /\ UNCHANGED serial
       ELSE
            /\ serial' = [serial EXCEPT ![t] = sers[k]]
            /\ pc' = [pc EXCEPT ![t] = "unbundle_cas_ancestors"]
            /\ local' = [local EXCEPT ![t] =
                   SetTop(l, [f2 EXCEPT !.found = found, !.copies = copies, !.casPos = k])]
    /\ UNCHANGED <<linkage, target, budget, queue, priorityTag>>

\* CAS one ancestor (root first) to its missing copy.
UnbundleCASAncestors(t) ==
    /\ pc[t] = "unbundle_cas_ancestors"
    /\ LET l == local[t]
           f == Top(l)
           i == f.casPos
           n == f.chain[i].node
       IN
       /\ CanProceed(t, n)
       /\ IF linkage[n] = f.chain[i].w THEN
               /\ linkage' = [linkage EXCEPT ![n] = f.copies[i]]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = IF i = 1 THEN "unbundle_cas_child"
                                                   ELSE "unbundle_cas_ancestors"]
               /\ local' = [local EXCEPT ![t] = SetTop(l, [f EXCEPT !.casPos = i - 1])]
          ELSE LET r == AfterReturn(PopL(l), Outcome("disturbed")) IN
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<serial, target, budget, queue>>

\* CAS the target to priority with its found packet (or, in a commit, the
\* transaction's new packet).
UnbundleCASChild(t) ==
    /\ pc[t] = "unbundle_cas_child"
    /\ LET l  == local[t]
           f  == Top(l)
           n  == f.node
           s  == Gen(serial[t], Max(f.chain[1].w.ser, f.tw.ser))
           p  == IF f.mode = "commit" THEN NewPkt(l.snapPkt, n, s) ELSE f.found
           nw == PW(p, s)
           inst == [m \in {f.chain[i].node : i \in 1..Len(f.chain)} |->
                      LET i == CHOOSE i \in 1..Len(f.chain) : f.chain[i].node = m
                      IN [old |-> f.chain[i].w, new |-> f.copies[i]]]
       IN
       /\ CanProceed(t, n)
       /\ serial' = [serial EXCEPT ![t] = s]
       /\ IF linkage[n] = f.tw THEN
               LET r == AfterReturn(PopL(l), [Outcome("newsub") EXCEPT !.inst = inst]) IN
               /\ linkage' = [linkage EXCEPT ![n] = nw]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
          ELSE LET r == AfterReturn(PopL(l), Outcome("disturbed")) IN
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = r.pc]
               /\ local' = [local EXCEPT ![t] = r.l]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<target, budget, queue>>

-----------------------------------------------------------------------------
(* commit.rs *)

\* The closure has run (its effect is NewPkt); choose the first commit step.
CommitStart(t) ==
    /\ pc[t] = "commit_start"
    /\ pc' = [pc EXCEPT ![t] = IF local[t].snapW # Null THEN "commit_parent" ELSE "commit_read"]
    /\ UNCHANGED <<linkage, serial, target, local, budget, queue, priorityTag>>

\* CAS against the wrapper the snapshot was read from.
CommitParent(t) ==
    /\ pc[t] = "commit_parent"
    /\ LET l == local[t]
           n == target[t]
           s == Gen(serial[t], l.snapW.ser)
       IN
       /\ CanProceed(t, n)
       /\ serial' = [serial EXCEPT ![t] = s]
       /\ IF linkage[n] = l.snapW THEN
               /\ linkage' = [linkage EXCEPT ![n] = PW(NewPkt(l.snapPkt, n, s), s)]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_done"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.snapW = Null, !.result = "ok"]]
          ELSE
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_read"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.snapW = Null]]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<target, budget, queue>>

\* Load: still our packet (CAS it), another packet (conflict), or bundled
\* (unbundle, installing our new packet).
CommitRead(t) ==
    /\ pc[t] = "commit_read"
    /\ LET l == local[t]
           n == target[t]
           w == linkage[n]
       IN
       IF HasPri(w) /\ w.pkt = l.snapPkt THEN
            /\ pc' = [pc EXCEPT ![t] = "commit_try_cas"]
            /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = w]]
       ELSE IF HasPri(w) THEN
            /\ pc' = [pc EXCEPT ![t] = "commit_done"]
            /\ local' = [local EXCEPT ![t] = [l EXCEPT !.result = "conflict"]]
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "unbundle_walk"]
            /\ local' = [local EXCEPT ![t] = PushL(l, UnbundleFrame(n, w, "commit", Null))]
    /\ UNCHANGED <<linkage, serial, target, budget, queue, priorityTag>>

\* CAS against the wrapper commit_read loaded.
CommitTryCAS(t) ==
    /\ pc[t] = "commit_try_cas"
    /\ LET l == local[t]
           n == target[t]
           s == Gen(serial[t], l.readW.ser)
       IN
       /\ CanProceed(t, n)
       /\ serial' = [serial EXCEPT ![t] = s]
       /\ IF linkage[n] = l.readW THEN
               /\ linkage' = [linkage EXCEPT ![n] = PW(NewPkt(l.snapPkt, n, s), s)]
               /\ CasSucceeded(t, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_done"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = Null, !.result = "ok"]]
          ELSE
               /\ CasFailed(t, n)
               /\ pc' = [pc EXCEPT ![t] = "commit_read"]
               /\ local' = [local EXCEPT ![t] = [l EXCEPT !.readW = Null]]
               /\ UNCHANGED linkage
    /\ UNCHANGED <<target, budget, queue>>

\* Report the result: committed (release tags, iteration bookkeeping) or
\* conflict (drive() retries with a fresh snapshot; tags are kept).
CommitDone(t) ==
    /\ pc[t] = "commit_done"
    /\ IF local[t].result = "ok" THEN
            LET q == queue[t] \ {target[t]} IN
            /\ priorityTag' = ClearMyTags(t)
            /\ queue' = [queue EXCEPT ![t] = q]
            /\ budget' = [budget EXCEPT ![t] = IF q = {} THEN @ - 1 ELSE @]
            /\ pc' = [pc EXCEPT ![t] = "idle"]
            /\ target' = [target EXCEPT ![t] = Null]
            /\ local' = [local EXCEPT ![t] = Local0]
       ELSE
            /\ pc' = [pc EXCEPT ![t] = "snap_check"]
            /\ local' = [local EXCEPT ![t] = [Local0 EXCEPT !.op = "snap"]]
            /\ UNCHANGED <<priorityTag, queue, budget, target>>
    /\ UNCHANGED <<linkage, serial>>

-----------------------------------------------------------------------------
(* negotiation.rs: a thread waiting at a CAS step on a foreign tag takes *)
(* the tag over when it is older.                                         *)

\* The node the thread's next step CASes (Null: its next step is no CAS).
CasNode(t) ==
    LET l == local[t] IN
    CASE pc[t] = "bundle_phase2"          -> Top(l).node
      [] pc[t] = "bundle_phase3"          -> Kids(Top(l).node)[Top(l).idx]
      [] pc[t] = "bundle_phase4"          -> Top(l).node
      [] pc[t] = "unbundle_cas_ancestors" -> Top(l).chain[Top(l).casPos].node
      [] pc[t] = "unbundle_cas_child"     -> Top(l).node
      [] pc[t] \in {"commit_parent", "commit_try_cas"} -> target[t]
      [] OTHER -> Null

PreemptTag(t, n) ==
    /\ Privilege
    /\ n = CasNode(t)
    /\ priorityTag[n] # Null
    /\ priorityTag[n][2] # t
    /\ TagOlder(MyTag(t), priorityTag[n])
    /\ priorityTag' = [priorityTag EXCEPT ![n] = MyTag(t)]
    /\ UNCHANGED <<linkage, serial, pc, target, local, budget, queue>>

-----------------------------------------------------------------------------
AllDone == \A t \in Threads : pc[t] = "idle" /\ budget[t] = 0

NextStep ==
    \E t \in Threads :
        \/ SnapRead(t)
        \/ SnapCheck(t)
        \/ BundlePhase1(t)
        \/ BundlePhase2(t)
        \/ BundlePhase3(t)
        \/ BundlePhase4(t)
        \/ UnbundleWalk(t)
        \/ UnbundleCASAncestors(t)
        \/ UnbundleCASChild(t)
        \/ CommitStart(t)
        \/ CommitParent(t)
        \/ CommitRead(t)
        \/ CommitTryCAS(t)
        \/ CommitDone(t)
        \/ \E n \in Nodes : PreemptTag(t, n)

\* Finished: a self-loop, so the deadlock check stays on; outside NextStep,
\* so weak fairness cannot be satisfied by stuttering here.
Terminating == AllDone /\ UNCHANGED vars

Next == NextStep \/ Terminating

Spec == Init /\ [][Next]_vars /\ WF_vars(NextStep)

EventuallyAllDone == <>AllDone

-----------------------------------------------------------------------------
(* Invariants *)

\* The node's current packet: its own, or its slot in the packet of the
\* node it is bundled into (recursively).  Null: lost.
RECURSIVE CurPkt(_)
CurPkt(n) ==
    IF HasPri(linkage[n]) THEN linkage[n].pkt
    ELSE LET up == CurPkt(linkage[n].by) IN
         IF up = Null THEN Null ELSE up.sub[n]

TypeOK ==
    /\ \A n \in Nodes : HasPri(linkage[n]) <=> linkage[n].pkt # Null
    /\ \A t \in Threads : serial[t] % SerialBase = t
    /\ pc \in [Threads -> {"idle", "snap_check", "bundle_phase1", "bundle_phase2",
                           "bundle_phase3", "bundle_phase4", "unbundle_walk",
                           "unbundle_cas_ancestors", "unbundle_cas_child",
                           "commit_start", "commit_parent", "commit_read",
                           "commit_try_cas", "commit_done"}]

\* A published packet that is not missing has a packet in every slot of its
\* subtree (Packet::is_complete means what it says), and so has every
\* snapshot a thread holds.
SnapshotConsistency ==
    /\ \A n \in Inner : HasPri(linkage[n]) /\ ~linkage[n].pkt.missing => NoVoid(linkage[n].pkt)
    /\ \A t \in Threads : local[t].snapPkt # Null => Complete(local[t].snapPkt)
                                                  /\ NoVoid(local[t].snapPkt)

\* Every node's packet is reachable, and the root always has priority.
NoPriorityLoss ==
    /\ HasPri(linkage[RootNode])
    /\ \A n \in Nodes : CurPkt(n) # Null

\* A bundled reference points at the node's parent, and a complete packet
\* owns its subtree: every child of a node whose current packet is complete
\* is bundled into it (so nobody can change a child without first CASing
\* the ancestors, which marks them missing).
BundleRefConsistency ==
    /\ \A n \in Nodes : ~HasPri(linkage[n]) => linkage[n].by = ParentOf(n)
    /\ \A n \in Inner : (CurPkt(n) # Null /\ ~CurPkt(n).missing) =>
            \A c \in KidSet(n) : linkage[c].by = n

\* A complete packet has no missing packet below it.
MissingPropagation ==
    \A n \in Inner : (CurPkt(n) # Null /\ ~CurPkt(n).missing) =>
        \A c \in KidSet(n) : CurPkt(n).sub[c] # Null /\ Complete(CurPkt(n).sub[c])

\* On a tree without hard links no bundle ever meets a void or colliding
\* slot: the `incomplete` paths of bundle.rs are for hard links only.
NoIncompleteBundle ==
    \A t \in Threads : \A i \in DOMAIN local[t].stack :
        local[t].stack[i].kind = "bundle" => ~local[t].stack[i].incomplete

\* Exact payloads: committed increments, none lost, none doubled.
LeafPay(c) == CurPkt(c).pay
Contrib(t, c) ==
    (MaxCommits - budget[t]) * Cardinality({x \in Jobs(t) : c \in Incs(x)})
    + (IF queue[t] = {} THEN 0
       ELSE Cardinality({x \in Jobs(t) \ queue[t] : c \in Incs(x)}))
RECURSIVE SumContrib(_, _)
SumContrib(S, c) ==
    IF S = {} THEN 0
    ELSE LET t == CHOOSE x \in S : TRUE IN Contrib(t, c) + SumContrib(S \ {t}, c)

QuiescentCheck ==
    (\A t \in Threads : pc[t] = "idle") => \A c \in Leaves : LeafPay(c) = SumContrib(Threads, c)

TerminalPayloadCheck ==
    AllDone => \A c \in Leaves :
        LeafPay(c) = MaxCommits * Cardinality({tx \in Threads \X Nodes :
                                                  tx[2] \in Jobs(tx[1]) /\ c \in Incs(tx[2])})

-----------------------------------------------------------------------------
(* VIEW: renormalise every Lamport counter in the state, keeping their    *)
(* order and which pairs differ by exactly one (every gap >= 2 becomes 2).*)
(* Sound because the protocol only compares serials (=, and < inside max) *)
(* and mints max(...) + 1: see tla/README.md "The VIEW".                  *)

RECURSIVE SerP(_)
SerP(p) == IF p = Null THEN {} ELSE {p.id} \cup UNION {SerP(p.sub[c]) : c \in DOMAIN p.sub}
SerW(w) == IF w = Null THEN {} ELSE {w.ser} \cup SerP(w.pkt)
SerS(s) == IF s = Null THEN {} ELSE {s}
SerFrame(f) ==
    SerW(f.w) \cup SerS(f.ser) \cup SerW(f.tw) \cup SerP(f.found)
    \cup UNION {SerP(f.coll[i].pkt) \cup SerW(f.coll[i].w) : i \in DOMAIN f.coll}
    \cup UNION {SerW(f.chain[i].w) : i \in DOMAIN f.chain}
    \cup UNION {SerW(f.copies[i]) : i \in DOMAIN f.copies}
SerL(l) ==
    SerP(l.snapPkt) \cup SerW(l.snapW) \cup SerW(l.readW)
    \cup UNION {SerFrame(l.stack[i]) : i \in DOMAIN l.stack}
AllSerials ==
    {serial[t] : t \in Threads}
    \cup UNION {SerW(linkage[n]) : n \in Nodes}
    \cup UNION {SerL(local[t]) : t \in Threads}

\* m[c] = sum over the counters d below c of (1 if d + 1 is a counter, else 2).
Renorm(S) ==
    LET C == {Cnt(s) : s \in S} IN
    [c \in C |-> 2 * Cardinality({d \in C : d < c})
                 - Cardinality({d \in C : d < c /\ d + 1 \in C})]

NS(m, s) == IF s = Null THEN Null ELSE m[Cnt(s)] * SerialBase + (s % SerialBase)
RECURSIVE NP(_, _)
NP(m, p) == IF p = Null THEN Null
            ELSE [p EXCEPT !.id = NS(m, @), !.sub = [c \in DOMAIN @ |-> NP(m, @[c])]]
NW(m, w) == IF w = Null THEN Null ELSE [w EXCEPT !.pkt = NP(m, @), !.ser = NS(m, @)]
NFrame(m, f) ==
    [f EXCEPT !.w = NW(m, @), !.ser = NS(m, @), !.tw = NW(m, @), !.found = NP(m, @),
              !.coll = [i \in DOMAIN @ |-> [pkt |-> NP(m, @[i].pkt), w |-> NW(m, @[i].w)]],
              !.chain = [i \in DOMAIN @ |-> [node |-> @[i].node, w |-> NW(m, @[i].w)]],
              !.copies = [i \in DOMAIN @ |-> NW(m, @[i])]]
NL(m, l) ==
    [l EXCEPT !.snapPkt = NP(m, @), !.snapW = NW(m, @), !.readW = NW(m, @),
              !.stack = [i \in DOMAIN @ |-> NFrame(m, @[i])]]

View ==
    LET m == Renorm(AllSerials) IN
    <<[n \in Nodes |-> NW(m, linkage[n])],
      [t \in Threads |-> NS(m, serial[t])],
      pc, target,
      [t \in Threads |-> NL(m, local[t])],
      budget, queue, priorityTag>>

\* The largest Lamport counter in the state (for the bound experiments).
MaxCounter == LET C == {Cnt(s) : s \in AllSerials} IN CHOOSE c \in C : \A d \in C : d <= c
=============================================================================
